"""Acting on a version's confidence inside Label Studio: the sure predictions become annotations,
the unsure ones go to annotators first.

- ``threshold_for(version, target)``: the threshold that reaches a target accuracy on the version's
  ground truth (core.evaluation.calibration), or a refusal that says the best there is.
- ``plan(version, threshold, client)``: what accepting would do, to show before asking.
- ``accept(version, threshold, client)``: annotate exactly the tasks whose prediction of the version
  is at or above the threshold and that nobody annotated yet. Each annotation is made as one Label
  Studio user, "Prompter (accepted prediction)", and keeps its prediction as its parent, so a
  reviewer finds them with the Data Manager's "Annotated by" filter (and the tab made for them).
- ``review_tab(version, threshold, client)``: a Data Manager tab of the tasks below the threshold
  that are not annotated yet, least confident first.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from core import audit, identity
from core.evaluation import calibration
from core.labelstudio import LabelStudioClient, LabelStudioError, Prediction
from core.prompts import Version

ACCEPTED_BY = "prompter-accepted@prompter.local"  # the Label Studio user accepted annotations are made as
ACCEPTED_BY_NAME = ("Prompter", "(accepted prediction)")
AT_ONCE = 4  # annotations created at once (Label Studio has no bulk create that names the annotator)


class AcceptError(ValueError):
    """Accepting cannot go ahead; the message says why and what to do."""


@dataclass(frozen=True)
class Plan:
    version: Version
    threshold: float
    to_accept: list[Prediction]  # at or above the threshold, on tasks nobody annotated yet
    annotated: int  # tasks with a prediction of the version that already have an annotation: left alone
    below: int  # not annotated, below the threshold: for review
    expected: calibration.Threshold | None  # what the ground truth says of the accepted part

    def sentence(self) -> str:
        said = f"{len(self.to_accept)} predictions of {self.version.model_version} are at or above {self.threshold:.2f} on tasks nobody annotated"
        if self.annotated:
            said += f" ({self.annotated} tasks already annotated are left as they are)"
        said += f"; {self.below} are below it, for review"
        if self.expected:
            low, high = self.expected.interval["low"], self.expected.interval["high"]
            said += (
                f". On ground truth, answers this sure were right {self.expected.accuracy:.1%} of the time "
                f"(95% interval {low:.1%}-{high:.1%}, {self.expected.tasks} tasks)"
            )
        return said + "."


@dataclass(frozen=True)
class Summary:
    accepted: int
    failed: int  # annotations Label Studio refused (each task fails alone)
    annotated: int
    queued: int  # left for review: below the threshold and not annotated
    expected: calibration.Threshold | None
    first_error: str | None = None
    task_ids: list[int] = field(default_factory=list)  # the tasks annotated

    def sentence(self) -> str:
        said = f"Accepted {self.accepted} predictions as annotations; {self.queued} tasks below the threshold are left for review"
        if self.annotated:
            said += f"; {self.annotated} already annotated were left as they are"
        if self.failed:
            said += f"; {self.failed} could not be annotated ({self.first_error})"
        if self.expected:
            low, high = self.expected.interval["low"], self.expected.interval["high"]
            said += f". Expect about {self.expected.accuracy:.1%} of the accepted to be right (95% interval {low:.1%}-{high:.1%}, from {self.expected.tasks} ground-truth tasks)"
        return said + "."


@dataclass(frozen=True)
class ReviewTab:
    view_id: int
    title: str
    tasks: int
    url: str


def threshold_for(version: Version, target: float) -> calibration.Threshold:
    found = calibration.of_version(version)
    if found.measure is None:
        raise AcceptError(f"{version.model_version}'s answers carry no confidence, so none can be accepted by it; save a version that measures agreement (n samples).")
    reached = calibration.threshold_for(found.points, target)
    if reached is None:
        raise AcceptError(calibration.verdict(found.points, target))
    return reached


def expected_at(version: Version, threshold: float) -> calibration.Threshold | None:
    """What the version's ground truth says of the answers at or above ``threshold``."""
    try:
        found = calibration.of_version(version)
    except calibration.NoConfidence:
        return None
    return calibration.at(found.points, threshold)


def plan(version: Version, threshold: float, client: LabelStudioClient) -> Plan:
    _check(threshold)
    annotated_tasks = {t.id for t in client.tasks(version.project_id) if any(not a.was_cancelled for a in t.annotations)}
    mine = _latest_per_task(client.predictions(version.project_id), version.model_version)
    sure = [p for p in mine.values() if p.score is not None and p.score >= threshold]
    to_accept = sorted((p for p in sure if p.task_id not in annotated_tasks), key=lambda p: p.task_id)
    below = sum(1 for p in mine.values() if p.task_id not in annotated_tasks and p.score is not None and p.score < threshold)
    annotated = sum(1 for task_id in mine if task_id in annotated_tasks)
    return Plan(version, threshold, to_accept, annotated, below, expected_at(version, threshold))


def accept(version: Version, threshold: float, client: LabelStudioClient) -> Summary:
    """Annotate the tasks whose prediction of ``version`` is at or above ``threshold`` (read again
    now, so nothing annotated since is annotated twice)."""
    user = identity.require_role("member", "accept predictions as annotations")
    found = plan(version, threshold, client)
    outcomes = _annotate(found.to_accept, client) if found.to_accept else []
    done = [task_id for task_id, error in outcomes if error is None]
    errors = [error for _, error in outcomes if error is not None]
    summary = Summary(len(done), len(errors), found.annotated, found.below, found.expected, errors[0] if errors else None, done)
    audit.record(
        "predictions accepted",
        target=version.model_version,
        by=user,
        detail={
            "project": version.project_id,
            "threshold": threshold,
            "accepted": summary.accepted,
            "failed": summary.failed,
            "already annotated": summary.annotated,
            "left for review": summary.queued,
            "expected accuracy": found.expected.accuracy if found.expected else None,
        },
    )
    return summary


def _annotate(predictions: list[Prediction], client: LabelStudioClient) -> list[tuple[int, str | None]]:
    """Each prediction made an annotation by the accepting user: (task id, None) or (task id, why not)."""
    annotator = client.user_id(ACCEPTED_BY, first_name=ACCEPTED_BY_NAME[0], last_name=ACCEPTED_BY_NAME[1])

    def annotate(p: Prediction) -> tuple[int, str | None]:
        try:
            client.create_annotation(p.task_id, p.result, completed_by=annotator, parent_prediction=p.id)
        except LabelStudioError as error:
            return p.task_id, str(error)
        return p.task_id, None

    with ThreadPoolExecutor(AT_ONCE) as pool:
        return list(pool.map(annotate, predictions))


def review_tab(version: Version, threshold: float, client: LabelStudioClient) -> ReviewTab:
    """The Data Manager tab of the version's predictions below ``threshold`` on tasks nobody
    annotated, least confident first; made once per version and threshold, replaced when asked
    again. The project's model version becomes this version's, which is what Label Studio's
    prediction score (the tab's filter and order) reads."""
    user = identity.require_role("member", "create review tabs in Label Studio")
    _check(threshold)
    if not any(p.model_version == version.model_version for p in client.predictions(version.project_id)):
        raise AcceptError(
            f"{version.model_version} has no predictions in project {version.project_id} yet, so there is nothing to review by it; "
            "run it over the project first (Predict), then make the tab."
        )
    client.set_model_version(version.project_id, version.model_version)
    title = f"Review first: {version.model_version} below {threshold:.2f}"
    data = {
        "title": title,
        "type": "list",
        "target": "tasks",
        "filters": {
            "conjunction": "and",
            "items": [
                {"filter": "filter:tasks:predictions_model_versions", "operator": "contains", "type": "List", "value": [version.model_version]},
                {"filter": "filter:tasks:predictions_score", "operator": "less", "type": "Number", "value": threshold},
                {"filter": "filter:tasks:total_annotations", "operator": "equal", "type": "Number", "value": 0},
            ],
        },
        "ordering": ["tasks:predictions_score"],
    }
    existing = next((v["id"] for v in client.views(version.project_id) if (v.get("data") or {}).get("title") == title), None)
    view_id = client.save_view(version.project_id, data, existing)
    listed = len(client.view_tasks(version.project_id, view_id))
    audit.record("review tab created", target=version.model_version, by=user, detail={"project": version.project_id, "threshold": threshold, "tasks": listed})
    return ReviewTab(view_id, title, listed, client.view_url(version.project_id, view_id))


def _latest_per_task(predictions: list[Prediction], model_version: str) -> dict[int, Prediction]:
    found: dict[int, Prediction] = {}
    for p in sorted(predictions, key=lambda p: p.id):
        if p.model_version == model_version:
            found[p.task_id] = p
    return found


def _check(threshold: float) -> None:
    if not 0.0 <= threshold <= 1.0:
        raise AcceptError(f"threshold: {threshold:g} is not a confidence; give one between 0 and 1, such as 0.9.")
