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
import signal
import sys
import threading
import warnings
from collections.abc import Callable
from operator import itemgetter
from pathlib import Path
from types import ModuleType
from typing import Any

from airflow_mlpipe._serving.row_screen import RowScreen
from airflow_mlpipe.config.streaming import StreamConfig
from airflow_mlpipe.core.class_scores import found_scores, predict_with_probabilities, proba_model
from airflow_mlpipe.deploy.bento import SERVICE_MODULE, bento_service_imports
from airflow_mlpipe.streaming.metrics import serve_metrics
from airflow_mlpipe.streaming.redis_streams import RedisStreamTransport
from airflow_mlpipe.streaming.scorer import StreamScorer

log = logging.getLogger("mlpipe.stream")

#: numpy dtypes of the request schema's numeric kinds, as the service's ``to_frame`` makes them
_BLOCK_DTYPES = {"double": "float64", "float": "float32", "integer": "int32", "long": "int64"}


def load_bento_service(bento_tag: str) -> tuple[ModuleType, Any]:
    """The bento's service module and an instance of its service class (model loaded).

    The module is imported afresh from the bento, whatever bento was imported or built before in
    this process, and is not left in ``sys.modules`` (see
    :func:`~airflow_mlpipe.deploy.bento.bento_service_imports`).
    """
    import bentoml

    src = Path(bentoml.bentos.get(bento_tag).path) / "src"
    with bento_service_imports(src):
        module = importlib.import_module(SERVICE_MODULE)
        return module, module.MlpipeModelService()


class BentoStreamModel:
    """A bento's service as a :class:`~airflow_mlpipe.streaming.scorer.StreamModel`.

    :param module: the bento's service module (``validate_rows``, ``to_frame``).
    :param service: an instance of its service class.
    :param probabilities: also return a class probability when the model has them: for two classes
        the positive class's (``classes[1]``, the ``scores`` of the HTTP service, see
        :func:`~airflow_mlpipe.core.class_scores.found_scores`), else the predicted class's.
    """

    def __init__(self, module: ModuleType, service: Any, *, probabilities: bool = True) -> None:
        self.module = module
        self.service = service
        self.identity = {k: "" if v is None else str(v) for k, v in service.identity.items()}
        model = service.model
        found = proba_model(model) if probabilities else None
        self._proba = found is not None
        #: the output field of the probability: ``score`` (binary) or ``probability`` (multiclass)
        self.score_field: str | None = None
        if found is not None:
            self.score_field = "score" if len(found.classes_) == 2 else "probability"
        if service.reader is not None:
            self._schema, self._what = service.key_schema, "entities"
        else:
            self._schema, self._what = service.inputs, "data"
        self._screen = RowScreen(self._schema)
        # Feature names of a scikit-learn estimator fitted on a DataFrame (see _values).
        names = getattr(model, "feature_names_in_", None)
        sklearn = service.config.get("framework") == "sklearn"
        self._named: list[str] | None = [str(n) for n in names] if sklearn and names is not None else None
        self._array: bool | None = None  # call the model on arrays: undecided until the first batch
        self._block = self._block_builder() if service.reader is None else None
        self._fortran = False  # the frame's array is column-major (set on the first batch)

    def _block_builder(self) -> tuple[Callable[[Any], Any], str] | None:
        """How to build the array of a batch straight from its rows, with no frame: a getter of a
        row's values in the estimator's column order and their dtype. Only when ``to_frame`` would
        make that very array its single block: one numeric kind, every column required, the
        signature's column order being the one the estimator was fitted on."""
        inputs = self.service.inputs
        names = [c["name"] for c in inputs]
        kinds = {str(c["type"]) for c in inputs}
        if (
            not names
            or names != self._named
            or len(kinds) != 1
            or not all(c.get("required", True) for c in inputs)
        ):
            return None
        dtype = _BLOCK_DTYPES.get(kinds.pop())
        if dtype is None:
            return None
        getter = itemgetter(*names) if len(names) > 1 else (lambda row: (row[names[0]],))
        return getter, dtype

    def validate(self, batch: list[Any]) -> list[ValueError | None]:
        """Each input checked as the HTTP service checks a one-row request: rows the screen passes
        are valid; the others get the bento's own ``validate_rows`` (its error, or ``None``)."""
        out: list[ValueError | None] = []
        for data, passed in zip(batch, self._screen(batch), strict=True):
            error = None
            if not passed:
                try:
                    self.module.validate_rows([data], self._schema, what=self._what, max_rows=1)
                except ValueError as exc:
                    error = exc
            out.append(error)
        return out

    def predict(self, batch: list[Any]) -> list[tuple[Any, float | None]]:
        """(prediction, the probability named by :attr:`score_field` or ``None``) per input."""
        import numpy as np

        if self._array and self._block is not None:
            # The first batch showed the array gives the frame's answers: no frame at all.
            getter, dtype = self._block
            values = np.array(list(map(getter, batch)), dtype=dtype)
            # In the frame's memory order too: a matrix product may round differently in another.
            predictions, probs = self._call(np.asfortranarray(values) if self._fortran else values)
        else:
            if self.service.reader is not None:
                frame = self.service._features_for(batch)
            else:
                frame = self.module.to_frame(batch, self.service.inputs)
            predictions, probs = self._answers(frame)
        labels = predictions.tolist()
        if not probs:
            return [(p, None) for p in labels]
        if "scores" in probs:  # two classes: the positive class's probability
            return list(zip(labels, probs["scores"], strict=True))
        index = {c: i for i, c in enumerate(probs["classes"])}
        return [(p, row[index[p]]) for p, row in zip(labels, probs["probabilities"], strict=True)]

    def _answers(self, frame: Any) -> tuple[Any, Any]:
        """``predict`` (and ``predict_proba``) of the model for ``frame``, called on its values when
        that gives the same answers (see :meth:`_values`)."""
        values = self._values(frame) if self._array is not False else None
        if values is None:
            return self._call(frame)
        try:
            answers = self._call(values)
        except Exception:
            self._array = False  # the frame's own answer (or error) decides
            return self._call(frame)
        if self._array is None:  # first batch: the values must give exactly the frame's answers
            self._fortran = bool(values.flags.f_contiguous and not values.flags.c_contiguous)
            expected = self._call(frame)
            self._array = _same(answers[0], expected[0]) and answers[1] == expected[1]
            log.info("model called with %s", "the frame's values" if self._array else "the frame")
            return expected
        return answers

    def _values(self, frame: Any) -> Any:
        """The frame as the 2-D array scikit-learn would make of it, or ``None``.

        scikit-learn checks a DataFrame's column names against the ones it was fitted with, then
        converts it to an array: for a micro-batch that costs more than the prediction. When the
        estimator was fitted on exactly the frame's columns, in order, and the frame is one numeric
        block, its array is what the estimator computes on; the first batch is scored both ways and
        the array is used only if the answers are identical (a pipeline that selects columns by
        name fails or differs there and keeps the frame).
        """
        if not self._named or list(frame.columns) != self._named or len(set(frame.dtypes.tolist())) != 1:
            return None
        values = frame.to_numpy()
        return values if values.dtype.kind in "biuf" else None

    def _call(self, data: Any) -> tuple[Any, dict[str, Any]]:
        """The model's predictions and :func:`found_scores` for ``data`` (``{}`` without them)."""
        model = self.service.model
        with warnings.catch_warnings():
            # scikit-learn warns that an array has no column names; _values checked they match
            warnings.filterwarnings("ignore", message="X does not have valid feature names")
            if not self._proba:
                return model.predict(data), {}
            predictions, found = predict_with_probabilities(model, data)
            return predictions, found_scores(found)


def _same(a: Any, b: Any) -> bool:
    import numpy as np

    return bool(np.array_equal(np.asarray(a), np.asarray(b)))


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
