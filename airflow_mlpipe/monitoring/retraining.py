"""What drift is measured against, and when a finding may ask for one more retraining.

* **Reference rebasing.** Once a model version serves, "drift" should mean "different from what
  that version learned from": :func:`serving_reference` reads the serving version's training data
  (its ``mlpipe.training_data.uri`` tag) so the drift check compares against it. Until a version
  serves, the configured reference is used.
* **Cooldown and dedup.** A retraining takes a few batches to serve; batches in between still
  drift against the old reference. :func:`cooldown_decision` lets one request per serving version
  through, then holds further requests for ``cooldown_batches`` batches while that same version
  still serves; a new serving version starts afresh.
* **Refresh after a drift.** The first retraining after a drift learns from the batches since the
  drift: often just one. With ``refresh_batches``, each of the next batches asks once more (reason
  ``refresh``, same drift start), as soon as the version asked for serves, so the model learns from
  the new regime as its data arrives; a refresh the gate blocked is repeated after the cooldown.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow_mlpipe.core.conventions import ALIAS_CHAMPION, TAG_LABEL, TAG_TRAINING_DATA_URI
from airflow_mlpipe.core.registry import get_version
from airflow_mlpipe.exceptions import ConfigError


def serving_reference(hook: Any, model_name: str, alias: str = ALIAS_CHAMPION) -> dict[str, Any] | None:
    """``{"uri", "version", "label"}`` of the training data behind ``alias`` (``uri`` ``None`` when
    the version does not record it); ``None`` when no version serves.

    :param hook: an :class:`~airflow_mlpipe.hooks.mlflow.MlflowHook`.
    """
    with hook.activate():
        client = hook.get_client()
        try:
            version = get_version(client, model_name, alias=alias)
        except ConfigError:  # no alias yet (nothing serves): the configured reference stays
            return None
    tags = dict(version.tags or {})
    uri = tags.get(TAG_TRAINING_DATA_URI) or None
    return {"uri": uri, "version": str(version.version), "label": tags.get(TAG_LABEL)}


#: the reason of a retraining asked for by :func:`cooldown_decision` to refresh a model after a drift
REFRESH_REASON = "refresh"


def cooldown_decision(
    state: dict[str, Any] | None,
    serving_version: str | None,
    wants_retrain: bool,
    cooldown_batches: int,
    *,
    refresh_batches: int = 0,
    batch_start: str | None = None,
) -> tuple[bool, dict[str, Any], str]:
    """Whether to ask for retraining now, the state to keep for the next batch, and why.

    :param state: what the previous batch left (``None`` on the first batch).
    :param serving_version: the version serving now (``None``: unknown or none).
    :param wants_retrain: the checks of this batch recommend retraining.
    :param cooldown_batches: batches to hold further requests while the same version serves.
    :param refresh_batches: after a request, batches that each ask once more (a refresh) once the
        retrained version serves, with the request's drift start (``state["drift_since"]``).
    :param batch_start: start of this batch: the drift start a new request records.
    """
    state = dict(state or {})
    same = "requested_for" in state and state["requested_for"] == serving_version
    since = int(state.get("batches_since_request", 0)) + 1 if same else 0
    refreshes = int(state.get("refreshes_left", 0))
    refresh = False
    if not wants_retrain and refreshes > 0 and (not same or since > cooldown_batches):
        note = (
            f"refresh {refresh_batches - refreshes + 1} of {refresh_batches} after the drift from "
            f"{state.get('drift_since')}: retraining with the batches since"
        )
        ask = refresh = True
    elif not wants_retrain:
        note = "no retraining needed"
        ask = False
    elif same and since <= cooldown_batches:
        note = (
            f"retraining already requested for serving version {serving_version} {since} batch(es) "
            f"ago; held for up to {cooldown_batches} batch(es) while it is answered"
        )
        ask = False
    else:
        note = "retraining requested"
        ask = True
    if ask:
        state = {
            "requested_for": serving_version,
            "batches_since_request": 0,
            "requested_at": dt.datetime.now(dt.UTC).isoformat(),
            "drift_since": state.get("drift_since") if refresh else batch_start,
            "refreshes_left": refreshes - 1 if refresh else refresh_batches,
            "reason": REFRESH_REASON if refresh else "checks",
        }
    elif same:
        state["batches_since_request"] = since
    return ask, state, note
