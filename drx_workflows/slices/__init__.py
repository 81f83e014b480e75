"""Stage 4: named dataset slices over structure metadata, with seeded stratified splits."""

from drx_workflows.slices.definition import SliceDefinition, stratified_split

__all__ = ["SliceDefinition", "stratified_split"]
