"""The benchmark of pledgeflow (`pledgeflow bench`), apart from the product: no product module
imports it, so editing it changes nothing an import does (nor the row cache's keys).

It ships in the same distribution; its extra dependencies (dlt, pyarrow, psutil) come with the
`bench` extra. `exports` is also the synthetic-export generator of the tests.
"""
