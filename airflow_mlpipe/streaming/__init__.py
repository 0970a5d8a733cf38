"""Streaming inference: score events from a stream with a served model version (see
``docs/stages/streaming.md``).

:mod:`~airflow_mlpipe.streaming.transport` is the transport interface, :mod:`.redis_streams` its Redis
Streams implementation, :mod:`.scorer` the consumer loop, :mod:`.metrics` its Prometheus exposition
and :mod:`.rollout` the hand-over of a stream from one model version to the next.
"""
