"""The next step of the loop a newcomer is led through: keys -> a prompt -> an evaluation -> predictions.

Each page asks where the user stands and shows one link onward; what counts as done is decided here,
so the pages and their tests agree on it.
"""

from __future__ import annotations

from dataclasses import dataclass

from core import keys, prompts, runs

KEYS, PROMPTS, EVALUATE, PREDICT = "views/1_Keys.py", "views/2_Prompts.py", "views/3_Evaluate.py", "views/4_Predict.py"


@dataclass(frozen=True)
class Step:
    page: str  # a page of the app, or an http(s) address
    label: str  # what the link says: the action, in a few words
    why: str  # one sentence: where the user stands


def first_step() -> Step | None:
    """For a dashboard with nothing in it yet: the first thing missing, in the loop's order."""
    if not keys.all_keys():
        return Step(KEYS, "Add a model-provider key", "Prompter needs a model to ask: add an OpenAI, Azure OpenAI or OpenAI-compatible key first.")
    if not prompts.latest_versions():
        return Step(PROMPTS, "Write a prompt", "Next, write a prompt against a Label Studio project and try it on a task.")
    if not runs.runs(kind="evaluate", limit=1):
        return Step(EVALUATE, "Evaluate a version", "Next, measure a version against the project's ground truth.")
    if not runs.runs(kind="predict", limit=1):
        return Step(PREDICT, "Predict with the best version", "Next, label the project with the version that scored best.")
    return None


def after_key_saved() -> Step:
    if prompts.latest_versions():
        return Step(PROMPTS, "Open the Prompts page", "The key is ready: pick it in a prompt's editor.")
    return Step(PROMPTS, "Write a prompt", "The key is ready: next, write a prompt against a Label Studio project.")


def after_version_saved(version: prompts.Version) -> Step:
    return Step(EVALUATE, f"Evaluate v{version.number}", f"Next, measure {version.model_version} against the project's ground truth.")


def after_evaluation(run: runs.RunView, accuracy: float | None) -> Step:
    if accuracy is None:
        return Step(PROMPTS, "Back to the Prompts page", "No accuracy to act on yet: fix the prompt or the failures, then evaluate again.")
    return Step(
        PREDICT,
        f"Predict with v{run.version}",
        f"v{run.version} scored {accuracy * 100:.1f}%. Label the whole project with it, or write a better version on the Prompts page first.",
    )


def after_prediction(run: runs.RunView, project_url: str) -> Step:
    return Step(project_url, "Review the predictions in Label Studio", f"{run.model_version} is in Label Studio: review its predictions, or turn them into annotations below.")
