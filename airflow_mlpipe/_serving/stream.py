"""The stream scorer process: serves one bento's model on a Redis stream (``python -m
airflow_mlpipe._serving.stream``), as ``bentoml serve`` serves it over HTTP.

It imports the bento's own copy of the service module, so the model, the request schema and the
Feast online features are the ones the HTTP service uses (same loading, same validation). It runs
until SIGTERM/SIGINT (the micro-batch in hand is committed first); a SIGKILL leaves that batch
pending for another consumer to claim. ``/metrics``, ``/livez`` and ``/readyz`` are served on
``--metrics-port``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

from airflow_mlpipe.config.streaming import StreamConfig
from airflow_mlpipe.deploy.bento import CONFIG_FILE, SERVICE_MODULE
from airflow_mlpipe.streaming.metrics import serve_metrics
from airflow_mlpipe.streaming.redis_streams import RedisStreamTransport
from airflow_mlpipe.streaming.scorer import StreamScorer

log = logging.getLogger("mlpipe.stream")


def load_bento_service(bento_tag: str) -> tuple[ModuleType, Any]:
    """The bento's service module and an instance of its service class (model loaded)."""
    import bentoml

    src = Path(bentoml.bentos.get(bento_tag).path) / "src"
    os.environ["MLPIPE_SERVICE_CONFIG"] = str(src / CONFIG_FILE)
    sys.path.insert(0, str(src))
    module = importlib.import_module(SERVICE_MODULE)
    return module, module.MlpipeModelService()


class BentoStreamModel:
    """A bento's service as a :class:`~airflow_mlpipe.streaming.scorer.StreamModel`.

    :param module: the bento's service module (``validate_rows``, ``to_frame``).
    :param service: an instance of its service class.
    :param probabilities: also return the probability of the predicted class when the model has one.
    """

    def __init__(self, module: ModuleType, service: Any, *, probabilities: bool = True) -> None:
        self.module = module
        self.service = service
        self.identity = {k: "" if v is None else str(v) for k, v in service.identity.items()}
        model = service.model
        self._proba = probabilities and hasattr(model, "predict_proba") and hasattr(model, "classes_")
        self._class_index = {c: i for i, c in enumerate(model.classes_)} if self._proba else {}

    def validate(self, data: Any) -> None:
        if self.service.reader is not None:
            self.module.validate_rows([data], self.service.key_schema, what="entities", max_rows=1)
        else:
            self.module.validate_rows([data], self.service.inputs, what="data", max_rows=1)

    def predict(self, batch: list[Any]) -> list[tuple[Any, float | None]]:
        if self.service.reader is not None:
            frame = self.service._features_for(batch)
        else:
            frame = self.module.to_frame(batch, self.service.inputs)
        predictions = self.service.model.predict(frame)
        if not self._proba:
            return [(p, None) for p in predictions.tolist()]
        probs = self.service.model.predict_proba(frame)
        index = self._class_index
        return [
            (p, float(probs[i, index[raw]]))
            for i, (raw, p) in enumerate(zip(predictions, predictions.tolist(), strict=True))
        ]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m airflow_mlpipe._serving.stream")
    parser.add_argument("--bento", required=True, help="bento tag to serve")
    parser.add_argument("--stream-config", required=True, help="StreamConfig as JSON")
    parser.add_argument("--name", required=True, help="scorer name (consumer group, routing owner)")
    parser.add_argument("--consumer", required=True, help="consumer name inside the group")
    parser.add_argument("--start", default="0", help="where a new consumer group starts")
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    config = StreamConfig.from_mapping(json.loads(args.stream_config))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    ready = threading.Event()
    scorer: StreamScorer | None = None
    holder: dict[str, Any] = {}
    server = serve_metrics(
        lambda: holder["metrics"].render() if holder else "", args.metrics_port, args.host, ready=ready.is_set
    )
    try:
        module, service = load_bento_service(args.bento)
        model = BentoStreamModel(module, service, probabilities=config.probabilities)
        transport = RedisStreamTransport(config)
        scorer = StreamScorer(transport, model, config=config, name=args.name, consumer=args.consumer)
        holder["metrics"] = scorer.metrics
        transport.ensure_group(scorer.group, args.start)
        ready.set()
        log.info(
            "scoring %s -> %s with %s v%s as %s/%s",
            config.input_stream,
            config.output_stream,
            model.identity["model_name"],
            model.identity["model_version"],
            scorer.group,
            args.consumer,
        )
        scorer.run(stop.is_set)
    finally:
        server.shutdown()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
