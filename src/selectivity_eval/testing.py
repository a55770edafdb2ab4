"""Test helpers for plugin authors (see docs/tutorial.md).

    from selectivity_eval.testing import check_measure_contract

    def test_my_measure_keeps_the_contract():
        check_measure_contract(MyMeasure())

    def test_my_plugin_runs_by_name(registered_plugin):      # a fixture: no import needed
        registered_plugin(my_package.plugin)
        ...

The ``registered_plugin`` fixture reaches every pytest session of an environment where
selectivity-eval is installed, through the ``pytest11`` entry point; with plugin autoloading
turned off (``PYTEST_DISABLE_PLUGIN_AUTOLOAD``), add ``pytest_plugins = ["selectivity_eval.testing"]``
to your top-level ``conftest.py``.
"""

from selectivity_eval.core.testing import (
    builtin_plugins_only,
    check_measure_contract,
    contract_data,
    registered_plugin,
)

__all__ = ["builtin_plugins_only", "check_measure_contract", "contract_data", "registered_plugin"]
