"""core.messages: what the model receives for each input type, and bad tasks that fail alone."""

from __future__ import annotations

import base64

import pytest

from core import labeling, messages
from core.messages import ImageLinks, RenderError
from core.prompts import Version
from tests.test_labeling import ALL, EVERY_CONTROL

MIXED = """
<View>
  <Text name="text" value="$text"/>
  <HyperText name="page" value="$html"/>
  <Paragraphs name="chat" value="$dialogue" nameKey="speaker" textKey="said"/>
  <Image name="photo" value="$image"/>
  <Choices name="topic" toName="text"><Choice value="Billing"/><Choice value="Delivery"/></Choices>
</View>
"""
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")


def version(template: str, controls=("topic",), system: str | None = None) -> Version:
    return Version("p", 1, 0, template, system, tuple(controls), "team", "gpt-4o-mini")


def test_each_input_type_is_inserted_by_its_kind():
    targets = labeling.read(MIXED)
    data = {
        "text": "Where is my parcel? 📦",
        "html": "<p>Order <b>#4821</b></p><script>x()</script>",
        "dialogue": [{"speaker": "customer", "said": "Hi"}, {"speaker": "agent", "said": "Hello"}],
        "channel": "email",
        "meta": {"tier": "gold"},
    }
    sent = messages.build(version("Message: {text}\nPage: {html}\nChat:\n{dialogue}\nVia {channel} {meta}\n{{json}}"), targets, data)
    assert sent == [
        {
            "role": "user",
            "content": 'Message: Where is my parcel? 📦\nPage: Order #4821\nChat:\ncustomer: Hi\nagent: Hello\nVia email {"tier": "gold"}\n{json}',
        }
    ]


def test_labels_say_what_each_control_accepts():
    targets = labeling.read(EVERY_CONTROL)
    sent = messages.build(version("{text}\n{labels}\nOnly: {labels:topics}", controls=ALL, system="Answer with {labels:sentiment}."), targets, {"text": "t", "other": "o"})
    assert sent[0] == {"role": "system", "content": "Answer with one of: Positive, Negative."}
    assert sent[1]["content"].splitlines()[1:] == [
        "sentiment: one of: Positive, Negative",
        "topics: any of: Price, Service, Speed",
        "entities: spans of the text, each quoted exactly and labeled one of: Person, Place",
        "summary: free text",
        "stars: a number from 0 to 10",
        "quality: a whole number from 1 to 5",
        "better: left or right",
        "category: one or more paths through: Food, Fruit, Bread, Drink",
        "Only: any of: Price, Service, Speed",
    ]


class TestImages:
    targets = labeling.read(MIXED)

    def content(self, image: str, links: ImageLinks | None = None):
        return messages.build(version("Describe {image} then {text}"), self.targets, {"image": image, "text": "t"}, links)[0]["content"]

    def test_a_public_url_is_sent_as_an_image_part_between_the_text(self):
        assert self.content("https://example.org/cat.png") == [
            {"type": "text", "text": "Describe "},
            {"type": "image_url", "image_url": {"url": "https://example.org/cat.png"}},
            {"type": "text", "text": " then t"},
        ]

    def test_an_image_stored_in_label_studio_is_fetched_and_sent_inline(self):
        fetched = []

        def fetch(path):
            fetched.append(path)
            return PNG, "image/png"

        links = ImageLinks("http://127.0.0.1:8080", fetch)
        inline = f"data:image/png;base64,{base64.b64encode(PNG).decode()}"
        assert self.content("/data/upload/3/cat.png", links)[1]["image_url"]["url"] == inline
        assert self.content("http://127.0.0.1:8080/data/local-files/?d=img/cat.png", links)[1]["image_url"]["url"] == inline
        assert fetched == ["/data/upload/3/cat.png", "/data/local-files/?d=img/cat.png"]

    @pytest.mark.parametrize(
        "image, links, message",
        [
            ("s3://bucket/cat.png", None, r"is in s3:// storage; Prompter sends images stored in Label Studio"),
            ("/data/upload/3/cat.png", None, "no Label Studio connection is set to fetch it"),
            ("/data/upload/3/notes.txt", ImageLinks("http://ls", lambda p: (b"hello", "text/plain")), "is not an image"),
            ("/data/upload/3/big.png", ImageLinks("http://ls", lambda p: (b"0" * 20_000_001, "image/png")), "providers accept images up to 20 MB"),
        ],
    )
    def test_images_that_cannot_be_sent_say_why(self, image, links, message):
        with pytest.raises(RenderError, match=message):
            self.content(image, links)

    @pytest.mark.parametrize(
        "image, why",
        [
            ("/data/upload/../../api/projects", "its path has a '..' segment"),
            ("/data/upload/%2e%2e/%2e%2e/api/users", "its path has a '..' segment"),
            ("/data/upload/%2E%2E%2F%2E%2E%2Fapi/users", "its path has a '..' segment"),
            ("/data/local-files/../../api/current-user/token", "its path has a '..' segment"),
            ("/data/upload/%252e%252e/%252e%252e/api/users", "its path is percent-encoded twice"),
            ("/data/upload/..\\..\\api/users", "its path holds a backslash"),
            ("/data/upload/1%5c..%5c..%5capi", "its path holds a backslash"),
            ("/data/upload/cat.png#/../../api/users", "it has a fragment"),
            ("http://127.0.0.1:8080/data/upload/../../api/users", "its path has a '..' segment"),
            ("http://127.0.0.1:8080/api/projects", "its path /api/projects is not under /data/upload/ or /data/local-files/"),
            ("/api/projects", "its path /api/projects is not under /data/upload/ or /data/local-files/"),
            ("/data/uploads-elsewhere/cat.png", "its path /data/uploads-elsewhere/cat.png is not under /data/upload/ or /data/local-files/"),
        ],
    )
    def test_a_path_that_would_take_the_token_elsewhere_is_refused_unfetched(self, image, why):
        fetched = []
        links = ImageLinks("http://127.0.0.1:8080", lambda path: fetched.append(path) or (PNG, "image/png"))
        with pytest.raises(RenderError) as refused:
            self.content(image, links)
        assert str(refused.value).startswith(f"The image {image!r} in field 'image' is refused: {why}")
        assert str(refused.value).endswith("Prompter sends its Label Studio token only for files stored in Label Studio (/data/upload/..., /data/local-files/...).")
        assert fetched == []

    def test_stored_paths_are_fetched_normalised_and_other_hosts_are_public(self):
        fetched = []
        links = ImageLinks("http://127.0.0.1:8080", lambda path: fetched.append(path) or (PNG, "image/png"))
        for image in ("/data/upload/3/./cat.png", "/data/upload//3/cat.png", "HTTP://127.0.0.1:8080/data/upload/3/cat.png", "/data/upload/3/my%20cat.png"):
            assert self.content(image, links)[1]["image_url"]["url"].startswith("data:image/png;base64,")
        assert fetched == ["/data/upload/3/cat.png"] * 3 + ["/data/upload/3/my%20cat.png"]
        # on another host (or port), a URL is public: the provider opens it, and no token goes with it
        for public in ("http://127.0.0.1:9999/data/upload/../../api/users", "https://cdn.example.org/data/upload/cat.png"):
            assert self.content(public, links)[1] == {"type": "image_url", "image_url": {"url": public}}
        assert len(fetched) == 4

    def test_an_image_cannot_go_in_the_system_message(self):
        with pytest.raises(RenderError, match="system message cannot hold an image"):
            messages.build(version("{text}", system="Look at {image}"), self.targets, {"image": "https://x/y.png", "text": "t"})


class TestBadTasks:
    targets = labeling.read(MIXED)

    def build(self, data):
        return messages.build(version("Classify: {text}"), self.targets, data)

    def test_a_task_over_one_megabyte(self):
        with pytest.raises(RenderError, match=r"The task's data is 1\.2 MB, more than the 1 MB .* split it"):
            self.build({"text": "x" * 1_200_000})

    def test_a_missing_field_names_the_fields_the_task_has(self):
        with pytest.raises(RenderError, match=r"The task has no field 'text', which Text 'text' reads; its fields are: body"):
            self.build({"body": "hello"})

    def test_text_that_is_not_valid_utf8(self):
        # JSON like {"text": "caf\udce9"} decodes to a lone surrogate: what invalid UTF-8 becomes in task data
        with pytest.raises(RenderError, match=r"field 'text' is not valid UTF-8 text \(a broken character at position 3\)"):
            self.build({"text": "caf\udce9"})

    def test_a_bad_task_fails_alone(self):
        tasks = [{"text": "one"}, {"body": "no text"}, {"text": "three"}]
        results = []
        for data in tasks:
            try:
                results.append(self.build(data)[0]["content"])
            except RenderError as error:
                results.append(f"failed: {error}")
        assert results[0] == "Classify: one" and results[2] == "Classify: three"
        assert results[1].startswith("failed: The task has no field 'text'")


def test_text_parts_shortens_inline_images():
    shown = messages.text_parts([
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "See "}, {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 4000}}]},
    ])
    assert shown == "[system]\nBe brief.\n\n[user]\nSee [image image/png, 3 kB inline]"
