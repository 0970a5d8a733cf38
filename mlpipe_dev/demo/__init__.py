"""The reference loop on one machine (``make demo``); see :mod:`mlpipe_dev.demo.runner`."""
