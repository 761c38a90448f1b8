"""The Django side's fixtures, from tests/support/django_fixtures.py: a clean Redis for every
test here (autouse), and the fixtures these tests ask for by name; and the operators' own,
from tests/ops/operators.py."""

from tests.ops.operators import dead_backend, operator
from tests.support.django_fixtures import (
    backend,
    clean_redis,
    enqueued,
    pytest_configure,
    samples,
    visitor,
)

# Found by pytest under these names, here.
__all__ = [
    "backend",
    "clean_redis",
    "dead_backend",
    "enqueued",
    "operator",
    "pytest_configure",
    "samples",
    "visitor",
]
