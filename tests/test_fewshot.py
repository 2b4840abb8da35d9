"""Few-shot examples: drawn only from the examples part of the split, chosen by id, seeded random, one
per class or by similarity; kept in the version so a re-run sends the same messages; never the task
itself; and paid for (the stand-in's log says what was sent and what it cost)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from core import connection, fewshot, keys, labeling, prompts, runs
from core.evaluation import evaluate, split, subsets
from core.labelstudio import NewTask
from core.prompts import PromptError
from core.workbench import Workbench
from tests.conftest import CHOICES_CONFIG, choice
from tests.standin import Reply
from tests.test_cli import _cli

ALL_TYPES = """
<View>
  <Text name="text" value="$text"/>
  <Choices name="one" toName="text"><Choice value="A"/><Choice value="B"/></Choices>
  <Choices name="many" toName="text" choice="multiple"><Choice value="A"/><Choice value="B"/></Choices>
  <Taxonomy name="tree" toName="text"><Choice value="X"><Choice value="Y"/></Choice></Taxonomy>
  <Labels name="spans" toName="text"><Label value="P"/></Labels>
  <TextArea name="summary" toName="text"/>
  <Number name="count" toName="text" min="0" max="10"/>
  <Rating name="stars" toName="text"/>
</View>"""


def test_a_ground_truth_becomes_the_answer_a_model_would_give_for_every_control_type():
    targets = labeling.read(ALL_TYPES)
    controls = [o.name for o in targets.outputs]
    data = {"text": "hello world, hello"}
    answer = {
        "one": "B",
        "many": ["A", "B"],
        "tree": [["X", "Y"]],
        "spans": [{"text": "hello", "label": "P"}, {"text": "hello", "label": "P"}],
        "summary": "a greeting",
        "count": 3.0,
        "stars": 4,
    }
    regions = labeling.to_regions(targets, controls, json.dumps(answer), data).regions
    assert labeling.answer_from_regions(targets, controls, regions, data) == answer
    # a ground truth that says nothing for one of the outputs cannot be an example of them all
    assert labeling.answer_from_regions(targets, controls, [r for r in regions if r["from_name"] != "stars"], data) is None


TEXTS = {  # 12 ground-truth tasks, 4 per class
    "I love this phone": "Positive",
    "great battery, great screen": "Positive",
    "the delivery was quick and friendly": "Positive",
    "works perfectly, happy customer": "Positive",
    "broken on arrival, refund please": "Negative",
    "the screen cracked after a day": "Negative",
    "terrible support, never again": "Negative",
    "my password reset link does not work": "Negative",
    "it is a phone": "Neutral",
    "arrived on Tuesday": "Neutral",
    "the box was blue": "Neutral",
    "I have not opened it yet": "Neutral",
}
TEMPLATE = "Review: {text}\nAnswer with {labels}"


@pytest.fixture
def project(use_labelstudio, make_project, standin):
    keys.add("team", "openai-compatible", base_url=standin.base_url)
    found, ids = make_project(CHOICES_CONFIG, [NewTask({"text": t}, [(choice(label), True)]) for t, label in TEXTS.items()], title="few-shot check")
    made = split.make(connection.client(), found.id, examples=4, test_share=0.34, seed=3)
    return found, dict(zip(ids, TEXTS)), made


def _bench(project_id: int) -> Workbench:
    return Workbench.open(project_id)


def test_examples_come_only_from_the_examples_part(project):
    found, text_of, made = project
    bench = _bench(found.id)
    outside = made.parts["test"][0]
    with pytest.raises(PromptError, match=f"task {outside} is not in the examples part"):
        bench.choose_examples(["sentiment"], how="ids", k=1, ids=[outside])
    by_id = bench.choose_examples(["sentiment"], how="ids", k=0, ids=made.parts["examples"][:2])
    assert by_id["ids"] == made.parts["examples"][:2]
    assert [e["answer"] for e in by_id["pool"]] == [{"sentiment": TEXTS[text_of[t]]} for t in made.parts["examples"][:2]]

    random_ = bench.choose_examples(["sentiment"], how="random", k=3, seed=9)
    assert random_ == bench.choose_examples(["sentiment"], how="random", k=3, seed=9)  # seeded
    assert len(random_["ids"]) == 3 and set(random_["ids"]) <= set(made.parts["examples"])

    per_class = bench.choose_examples(["sentiment"], how="per-class", k=3)
    assert [TEXTS[text_of[t]] for t in per_class["ids"]] == ["Positive", "Negative", "Neutral"]  # the config's order


def test_without_a_split_there_are_no_examples_to_choose_from(use_labelstudio, make_project, standin):
    found, _ = make_project(CHOICES_CONFIG, [NewTask({"text": "fine"}, [(choice("Neutral"), True)])])
    with pytest.raises(PromptError, match="has none yet: split it on the Evaluate page"):
        _bench(found.id).choose_examples(["sentiment"], how="random", k=1)


def test_similar_examples_are_the_ones_closest_to_the_task_and_never_the_task_itself():
    targets = labeling.read(CHOICES_CONFIG)
    pool = [
        {"task_id": 1, "data": {"text": "refund my order please"}, "answer": {"sentiment": "Negative"}},
        {"task_id": 2, "data": {"text": "password reset link login broken"}, "answer": {"sentiment": "Negative"}},
        {"task_id": 3, "data": {"text": "delivery was late, parcel lost"}, "answer": {"sentiment": "Negative"}},
    ]
    setting = {"how": "similar", "k": 2, "seed": 0, "ids": [], "pool": pool}
    shown = fewshot.for_task(setting, targets, 99, {"text": "I cannot login, the password reset fails"})
    assert [e.task_id for e in shown][0] == 2 and len(shown) == 2
    itself = fewshot.for_task(setting, targets, 2, {"text": "password reset link login broken"})
    assert sorted(e.task_id for e in itself) == [1, 3]  # its twin would be first, but a task is never its own example
    fixed = {"how": "ids", "k": 3, "seed": 0, "ids": [1, 2, 3], "pool": pool}
    assert [e.task_id for e in fewshot.for_task(fixed, targets, 2, {"text": "x"})] == [1, 3]  # not its own example


def test_an_evaluation_with_examples_sends_them_before_each_task_and_pays_for_them(project, standin):
    found, text_of, made = project
    id_of = {text: task_id for task_id, text in text_of.items()}
    standin.respond_with(lambda r: Reply.json({"sentiment": TEXTS[r.last_user_text.split("Review: ")[1].split("\n")[0]]}))
    bench = _bench(found.id)
    plain = prompts.create(found.id, "fewshot", template=TEMPLATE, controls=["sentiment"], provider_key="team", model="gpt-4o-mini")
    draft = bench.draft(name="fewshot", template=TEMPLATE, provider_key="team", model="gpt-4o-mini", note="3 examples")
    draft = dataclasses.replace(draft, examples=bench.choose_examples(["sentiment"], how="per-class", k=3))
    shown = bench.save_version("fewshot", draft)
    assert shown.examples["how"] == "per-class" and prompts.version("fewshot", 2, found.id).examples == shown.examples
    assert "Few-shot examples" in [name for name, _, _ in prompts.diff(plain, shown).settings]

    client = connection.client()
    run = runs.execute(evaluate.start(shown, subsets.choose(client, found.id, "test"), client.label_config(found.id)).id)
    assert run.status == "completed" and run.done == len(made.parts["test"])
    examples = shown.examples["ids"]
    for request in standin.requests:
        roles = [m["role"] for m in request.messages]
        assert roles == ["user", "assistant"] * 3 + ["user"]
        shown_texts = [m["content"].split("Review: ")[1].split("\n")[0] for m in request.messages[:-1] if m["role"] == "user"]
        assert [id_of[t] for t in shown_texts] == examples  # the examples, in order, from the examples part only
        assert not set(id_of[t] for t in shown_texts) & set(made.parts["test"])
        assert [json.loads(m["content"]) for m in request.messages if m["role"] == "assistant"] == [{"sentiment": TEXTS[t]} for t in shown_texts]
    # cost: the stand-in's usage counts every character sent, examples included (gpt-4o-mini: $0.15 / $0.60 per million)
    sent = [(len(r.all_text) // 4 + 1, len(json.dumps({"sentiment": TEXTS[r.last_user_text.split("Review: ")[1].split("\n")[0]]})) // 4 + 1) for r in standin.requests]
    assert run.input_tokens == sum(i for i, _ in sent) and run.cost_usd == pytest.approx(sum(i * 0.15 + o * 0.60 for i, o in sent) / 1e6)
    assert run.input_tokens > sum(len(r.last_user_text) // 4 + 1 for r in standin.requests) * 3  # the examples are most of it


def test_the_command_line_saves_a_version_with_examples(project):
    found, text_of, made = project
    prompts.create(found.id, "cli-shots", template=TEMPLATE, controls=["sentiment"], provider_key="team", model="gpt-4o-mini")
    done = _cli("prompts", "version", "--prompt", "cli-shots", "--examples", "random", "--k", "2", "--examples-seed", "5", "--json")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["examples"]["how"] == "random" and set(document["examples"]["ids"]) <= set(made.parts["examples"])
    assert document["examples"] == prompts.version("cli-shots", 2, found.id).examples
    refused = _cli("prompts", "version", "--prompt", "cli-shots", "--examples", "ids", "--example-ids", str(made.parts["test"][0]))
    assert refused.returncode == 1 and "is not in the examples part" in refused.stderr
    shown = _cli("prompts", "show", "cli-shots")
    assert "few-shot examples: 2 seeded random, seed 5: tasks" in shown.stdout


def test_similar_examples_by_an_embeddings_model_follow_its_vectors_and_are_embedded_once(project, standin):
    from tests.standin import embed_words

    found, text_of, made = project
    id_of = {text: task_id for task_id, text in text_of.items()}
    standin.respond_with(lambda r: Reply.json({"sentiment": TEXTS[r.last_user_text.split("Review: ")[1].split("\n")[0]]}))
    bench = _bench(found.id)
    prompts.create(found.id, "near", template=TEMPLATE, controls=["sentiment"], provider_key="team", model="gpt-4o-mini")
    chosen = bench.choose_examples(["sentiment"], how="similar", k=2, embeddings=("team", "text-embedding-3-small"))
    assert chosen["embeddings"] == {"key": "team", "model": "text-embedding-3-small"}
    (first,) = standin.embedding_requests  # the examples, embedded when chosen
    assert sorted(first["input"]) == sorted(text_of[t] for t in made.parts["examples"]) and first["model"] == "text-embedding-3-small"
    shown = bench.save_version("near", dataclasses.replace(bench.draft(name="near", template=TEMPLATE, provider_key="team", model="gpt-4o-mini"), examples=chosen))
    assert "embeddings: team · text-embedding-3-small" in fewshot.describe(shown.examples)

    client = connection.client()
    test = subsets.choose(client, found.id, "test")
    run = runs.execute(evaluate.start(shown, test, client.label_config(found.id)).id)
    assert run.status == "completed", run.status_reason

    def cosine(a, b):
        return sum(x * y for x, y in zip(a, b))  # the stand-in's vectors have unit length

    for request in standin.requests:
        task_text = request.last_user_text.split("Review: ")[1].split("\n")[0]
        ranked = sorted(made.parts["examples"], key=lambda t: (-cosine(embed_words(text_of[t]), embed_words(task_text)), t))
        sent = [id_of[m["content"].split("Review: ")[1].split("\n")[0]] for m in request.messages[:-1] if m["role"] == "user"]
        assert sent == ranked[:2]
    # one more request for the whole batch of test tasks; the examples came from the store
    assert len(standin.embedding_requests) == 2
    batch = standin.embedding_requests[1]["input"]
    assert sorted(batch) == sorted(text_of[t] for t in test.task_ids)
    words = sum(len(t.split()) for t in batch)  # the stand-in counts a token per word
    chats = sum(len(r.all_text) // 4 + 1 for r in standin.requests)
    assert run.input_tokens == chats + words  # the run paid for embedding its tasks too
    # gpt-4o-mini at $0.15 / $0.60 per million, text-embedding-3-small at $0.02
    assert run.cost_usd == pytest.approx((chats * 0.15 + run.output_tokens * 0.60 + words * 0.02) / 1e6)

    # a re-run ranks from the stored vectors: the same messages (every answer from the cache), no embeddings call
    again = runs.execute(evaluate.start(shown, test, client.label_config(found.id)).id)
    assert again.cached == again.total and len(standin.embedding_requests) == 2


def test_an_embeddings_model_that_fails_is_refused_when_the_examples_are_chosen(project, standin):
    found, text_of, made = project
    standin.embeddings_fail = True
    with pytest.raises(PromptError, match="could not be found: The embeddings model text-embedding-3-small on key team refused the request \\(500\\)"):
        _bench(found.id).choose_examples(["sentiment"], how="similar", k=2, embeddings=("team", "text-embedding-3-small"))
