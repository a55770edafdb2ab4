"""Built-in measures: localist, precision, CCMAS, top-class selectivity and detection."""
