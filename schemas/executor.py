"""The spec's ``executor:`` block: where a run's extraction and measures execute.

``local`` (the default) runs everything in this process, as a spec without the block always has.
``dask`` runs them as tasks of an existing ``dask.distributed`` engine: a scheduler at ``address``,
or a ``local_cluster`` of worker processes that the run starts and closes. Dask is an optional
extra; these models only describe the block and never import it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class LocalClusterSpec(BaseModel):
    """A ``dask.distributed.LocalCluster`` on this machine, started and closed by the run."""

    model_config = ConfigDict(extra="forbid")

    workers: int = Field(2, ge=1, description="Worker processes.")
    threads_per_worker: int = Field(1, ge=1, description="Threads of each worker process.")
    memory_limit: str | None = Field(
        None, description="Memory limit of each worker, as dask reads it ('4GiB'); omitted: dask's default."
    )

    @model_validator(mode="before")
    @classmethod
    def _defaults_from_true(cls, value: Any) -> Any:
        return {} if value is True or value is None else value


class ExecutorSpec(BaseModel):
    """``kind: local`` (in this process) or ``kind: dask`` with ``address`` or ``local_cluster``."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["local", "dask"] = Field("local", description="local: in this process; dask: on dask.distributed.")
    address: str | None = Field(
        None, description="dask: the address of a running dask.distributed scheduler, e.g. tcp://10.0.0.5:8786."
    )
    local_cluster: LocalClusterSpec | None = Field(
        None, description="dask: start a LocalCluster of this many workers and threads for the run, then close it."
    )
    shard_images: int | None = Field(
        None,
        ge=1,
        description="dask: images per extraction task, rounded up to a multiple of batch_size; omitted: "
        "about four tasks per worker thread.",
    )
    chunk_units: int | None = Field(
        None,
        ge=1,
        description="dask: units per measure task; omitted: about two tasks per worker thread, "
        "within the in-process chunk bound.",
    )
    permutation_block: int | None = Field(
        None, ge=1, description="dask: label shufflings per chance task; omitted: split into about four blocks."
    )

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        return {"kind": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_place_to_run(self) -> ExecutorSpec:
        if self.kind == "local":
            dask_only = [
                key
                for key in ("address", "local_cluster", "shard_images", "chunk_units", "permutation_block")
                if getattr(self, key) is not None
            ]
            if dask_only:
                raise ValueError(f"{', '.join(dask_only)}: used only with kind: dask")
        elif (self.address is None) == (self.local_cluster is None):
            raise ValueError(
                "kind: dask needs exactly one of `address` (a running scheduler) or `local_cluster` "
                "(workers started for the run), e.g. local_cluster: {workers: 2}"
            )
        return self
