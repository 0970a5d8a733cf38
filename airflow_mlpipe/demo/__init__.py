"""The reference loop on one machine (``make demo``); see :mod:`airflow_mlpipe.demo.runner`."""
