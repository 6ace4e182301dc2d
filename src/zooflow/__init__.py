"""zooflow: mmcls image classifiers to compiled, benchmarked, accuracy-checked deployments.

This package is the plain-Python core: it never imports Prefect (the `tasks/` and `flows/`
packages wrap it), so every stage can be used and tested on its own.
"""

__version__ = "0.1.0"
