"""Datasets are Dagster partitions: one code location, one instance and one webserver hold every
dataset, and each has its own status, history and check results.

Why partitions rather than an asset-key prefix per dataset: the pipeline is the same for every
dataset, so the graph is drawn once; a dataset added by ``visrec data import`` (or found by a
sensor) is a new partition at once, with no code-location reload; run config, op names and jobs
stay the same; "Materialize" in the UI asks which dataset and runs just that one.
"""
import warnings

from dagster import DynamicPartitionsDefinition

try:   # per-partition asset checks are a preview feature in Dagster 1.13; pinned, so it holds
    from dagster import PreviewWarning
    warnings.filterwarnings("ignore", category=PreviewWarning, message=".*partitions_def.*AssetCheckSpec.*")
except ImportError:  # pragma: no cover - older/newer Dagster without the class
    pass

DATASETS = DynamicPartitionsDefinition(name="dataset")


def register_dataset(instance, name: str) -> None:
    """Make ``name`` a partition of every asset (a no-op if it is one already)."""
    if not instance.has_dynamic_partition(DATASETS.name, name):
        instance.add_dynamic_partitions(DATASETS.name, [name])
