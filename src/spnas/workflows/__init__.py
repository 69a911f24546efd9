"""The product commands built from the jobs: ``spnas run`` (the pipeline and its report) and ``spnas sweep``."""
