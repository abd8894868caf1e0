"""Model analysis: field of view and complexity."""
from .complexity import CONVENTIONS, complexity, count_params
from .fov import field_of_view, fov_table

__all__ = ["CONVENTIONS", "complexity", "count_params", "field_of_view", "fov_table"]
