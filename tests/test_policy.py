"""Policy files: parsing, decisions, overlap precedence and the errors a user sees."""
from pathlib import Path

import pytest

from privcodec.errors import PolicyError
from privcodec.policy import Decision, load_policy

POLICIES = Path(__file__).resolve().parent.parent / "policies"


def write(tmp_path, text, name="p.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def error(tmp_path, text):
    """Load `text` as a policy and return the PolicyError message."""
    path = write(tmp_path, text)
    with pytest.raises(PolicyError) as exc:
        load_policy(path)
    msg = str(exc.value)
    assert str(path) in msg, "every error names the file"
    assert "\n" not in msg, "errors are one line"
    return msg


FACES_AND_PEOPLE = """
[[rule]]
match = ["face"]
action = "encrypt"
recipients = ["family"]

[[rule]]
match = ["person", "dog"]
action = "encrypt"
recipients = ["staff", "keys/admin.pub"]
grouping = "class"
margin = 12

[default]
action = "public"
"""


# --- shipped examples ---------------------------------------------------------------

@pytest.mark.parametrize("name", ["faces.toml", "people.toml", "plates.toml", "archive.toml"])
def test_shipped_policies_load(name):
    policy = load_policy(POLICIES / name)
    assert policy.rules and policy.default.action == "public"


def test_archive_gives_faces_and_people_to_different_recipients():
    policy = load_policy(POLICIES / "archive.toml")
    face, person = policy.decide("face"), policy.decide("person")
    assert face.action == person.action == "encrypt"
    assert set(face.recipients) != set(person.recipients)
    assert policy.rank("face") < policy.rank("person"), "a face inside a person stays the face's group"
    assert policy.decide("license_plate").action == "redact"
    assert policy.decide("background").action == "public"


# --- decisions ----------------------------------------------------------------------

def test_decide_returns_the_matching_rule(tmp_path):
    policy = load_policy(write(tmp_path, FACES_AND_PEOPLE))
    assert policy.decide("face") == Decision("encrypt", ("family",), 0)
    assert policy.decide("dog") == Decision("encrypt", ("staff", "keys/admin.pub"), 1)
    assert policy.rules[1].grouping == "class" and policy.rules[1].margin == 12
    assert policy.rules[0].grouping == "instance" and policy.rules[0].margin == 0
    assert policy.labels() == {"face", "person", "dog"}


def test_grouping_and_margin_per_label(tmp_path):
    policy = load_policy(write(tmp_path, FACES_AND_PEOPLE))
    assert (policy.grouping("dog"), policy.margin("dog")) == ("class", 12)
    assert (policy.grouping("face"), policy.margin("face")) == ("instance", 0)
    assert (policy.grouping("car"), policy.margin("car")) == ("instance", 0), "unmatched labels"


def test_unmatched_labels_and_background_use_default(tmp_path):
    policy = load_policy(write(tmp_path, FACES_AND_PEOPLE))
    assert policy.decide("car") == Decision("public", (), None)
    assert policy.decide("background") == Decision("public", (), None)


def test_labels_match_case_insensitively(tmp_path):
    policy = load_policy(write(tmp_path, '[[rule]]\nmatch = ["Secret"]\naction = "redact"\n'))
    assert policy.decide("secret").action == "redact"
    assert policy.decide(" SECRET ").action == "redact"


def test_missing_default_means_public(tmp_path):
    policy = load_policy(write(tmp_path, '[[rule]]\nmatch = ["face"]\naction = "redact"\n'))
    assert policy.default == Decision("public", (), None)


def test_empty_policy_keeps_everything_public(tmp_path):
    policy = load_policy(write(tmp_path, ""))
    assert policy.rules == [] and policy.decide("face").action == "public"


def test_default_may_encrypt_everything_unmatched(tmp_path):
    policy = load_policy(write(tmp_path, '[default]\naction = "encrypt"\nrecipients = ["vault"]\n'))
    assert policy.decide("background") == Decision("encrypt", ("vault",), None)


def test_star_matches_any_class_but_not_background(tmp_path):
    policy = load_policy(write(tmp_path, """
[[rule]]
match = ["face"]
action = "redact"
[[rule]]
match = ["*"]
action = "encrypt"
recipients = ["k"]
"""))
    assert policy.decide("face").rule == 0
    assert policy.decide("umbrella") == Decision("encrypt", ("k",), 1)
    assert policy.decide("background").rule is None
    assert "*" in policy.labels()


def test_background_can_be_named_explicitly(tmp_path):
    policy = load_policy(write(tmp_path, '[[rule]]\nmatch = ["background"]\naction = "encrypt"\n'
                                         'recipients = ["k"]\n'))
    assert policy.decide("background").rule == 0


# --- overlap precedence ---------------------------------------------------------------

def test_rank_first_listed_rule_wins_among_equal_actions(tmp_path):
    policy = load_policy(write(tmp_path, FACES_AND_PEOPLE))
    assert policy.rank("face") < policy.rank("person")
    assert policy.rank("person") == policy.rank("dog")


def test_rank_strictest_action_wins_whatever_the_order(tmp_path):
    policy = load_policy(write(tmp_path, """
[[rule]]
match = ["face"]
action = "public"
[[rule]]
match = ["person"]
action = "encrypt"
recipients = ["k"]
[[rule]]
match = ["license_plate"]
action = "redact"
"""))
    assert policy.rank("license_plate") < policy.rank("person") < policy.rank("face")


def test_rank_unmatched_labels_come_after_rules_of_the_same_action(tmp_path):
    policy = load_policy(write(tmp_path, """
[[rule]]
match = ["face"]
action = "encrypt"
recipients = ["k"]
[[rule]]
match = ["tree"]
action = "public"
[default]
action = "encrypt"
recipients = ["vault"]
"""))
    assert policy.rank("face") < policy.rank("car"), "first encrypt rule beats the default"
    assert policy.rank("car") < policy.rank("tree"), "an encrypting default beats a public rule"


# --- validation errors ----------------------------------------------------------------

def test_missing_file(tmp_path):
    with pytest.raises(PolicyError, match="no such policy file"):
        load_policy(tmp_path / "nope.toml")


def test_bad_toml_reports_the_line(tmp_path):
    msg = error(tmp_path, "[[rule]]\naction = encrypt\n")
    assert "invalid TOML" in msg and "line 2" in msg


def test_not_utf8(tmp_path):
    path = tmp_path / "p.toml"
    path.write_bytes(b'[default]\naction = "\xff"\n')
    with pytest.raises(PolicyError, match="UTF-8"):
        load_policy(path)


@pytest.mark.parametrize("text, expected", [
    ('[[rule]]\nmatch = ["face"]\naction = "encrypt"\n', "rule 1: action 'encrypt' needs 'recipients'"),
    ('[[rule]]\nmatch = ["face"]\naction = "encrypt"\nrecipients = []\n', "rule 1: 'recipients' is empty"),
    ('[[rule]]\nmatch = ["face"]\naction = "public"\nrecipients = ["k"]\n',
     "rule 1: 'recipients' is only allowed with action 'encrypt'"),
    ('[[rule]]\nmatch = ["face"]\naction = "redact"\nrecipients = ["k"]\n', "rule 1: 'recipients' is only allowed"),
    ('[[rule]]\nmatch = ["face"]\naction = "blur"\n', "rule 1: unknown action 'blur'"),
    ('[[rule]]\nmatch = ["face"]\n', "rule 1: missing 'action'"),
    ('[[rule]]\naction = "redact"\n', "rule 1: missing 'match'"),
    ('[[rule]]\nmatch = []\naction = "redact"\n', "rule 1: 'match' is empty"),
    ('[[rule]]\nmatch = "face"\naction = "redact"\n', "rule 1: 'match' must be a list"),
    ('[[rule]]\nmatch = [1]\naction = "redact"\n', "rule 1: 'match' must contain only strings"),
    ('[[rule]]\nmatch = [" "]\naction = "redact"\n', "rule 1: 'match' contains an empty string"),
    ('[[rule]]\nmatch = ["face"]\naction = "redact"\nmargn = 3\n', "rule 1: unknown key 'margn'"),
    ('[[rule]]\nmatch = ["face"]\naction = "redact"\nmargin = -1\n', "rule 1: 'margin' must be between 0"),
    ('[[rule]]\nmatch = ["face"]\naction = "redact"\nmargin = 100000\n', "rule 1: 'margin' must be between 0"),
    ('[[rule]]\nmatch = ["face"]\naction = "redact"\nmargin = 2.5\n', "rule 1: 'margin' must be a whole number"),
    ('[[rule]]\nmatch = ["face"]\naction = "redact"\nmargin = true\n', "rule 1: 'margin' must be a whole number"),
    ('[[rule]]\nmatch = ["face"]\naction = "redact"\ngrouping = "blob"\n', "rule 1: 'grouping' must be"),
    ('[[rule]]\nmatch = ["face"]\naction = "encrypt"\nrecipients = ["a", "a"]\n', "rule 1: recipient 'a' listed twice"),
    ('[[rule]]\nmatch = ["face", "face"]\naction = "redact"\n', "rule 1: 'face' listed twice"),
    ('[[rule]]\nmatch = ["faces"]\naction = "redact"\n', "rule 1: unknown class 'faces'; did you mean 'face'?"),
    ('[[rule]]\nmatch = ["people"]\naction = "redact"\n', "did you mean 'person'?"),
    ('[[rule]]\nmatch = ["licence_plate"]\naction = "redact"\n', "did you mean 'license_plate'?"),
    # one slip of the keyboard in a short class name: substitution, swap, deletion, insertion
    ('[[rule]]\nmatch = ["fase"]\naction = "redact"\n', "unknown class 'fase'; did you mean 'face'?"),
    ('[[rule]]\nmatch = ["faec"]\naction = "redact"\n', "did you mean 'face'?"),
    ('[[rule]]\nmatch = ["fce"]\naction = "redact"\n', "did you mean 'face'?"),
    ('[[rule]]\nmatch = ["fiace"]\naction = "redact"\n', "did you mean 'face'?"),
    ('[[rule]]\nmatch = ["preson"]\naction = "redact"\n', "did you mean 'person'?"),
    ('[rule]\nmatch = ["face"]\naction = "redact"\n', "'rule' must be an array of tables: write [[rule]]"),
    ('rules = []\n', "top level: unknown key 'rules'"),
    ('[default]\naction = "encrypt"\n', "[default]: action 'encrypt' needs 'recipients'"),
    ('[default]\naction = "public"\nmatch = ["x"]\n', "[default]: unknown key 'match'"),
    ('[default]\n', "[default]: missing 'action'"),
    ('default = "public"\n', "[default]: must be a table"),
])
def test_validation_errors_name_the_rule_and_the_problem(tmp_path, text, expected):
    assert expected in error(tmp_path, text)


def test_error_names_the_right_rule(tmp_path):
    text = FACES_AND_PEOPLE + '[[rule]]\nmatch = ["car"]\naction = "hide"\n'
    assert "rule 3: unknown action 'hide'" in error(tmp_path, text)


def test_duplicate_label_across_rules_says_which(tmp_path):
    msg = error(tmp_path, """
[[rule]]
match = ["face"]
action = "redact"
[[rule]]
match = ["person", "FACE"]
action = "encrypt"
recipients = ["k"]
""")
    assert "rule 2: 'face' is already matched by rule 1" in msg


def test_rule_after_star_can_never_match(tmp_path):
    msg = error(tmp_path, """
[[rule]]
match = ["*"]
action = "redact"
[[rule]]
match = ["face"]
action = "encrypt"
recipients = ["k"]
""")
    assert "rule 2: 'face' can never match: rule 1 already matches '*'" in msg


def test_custom_region_labels_are_accepted(tmp_path):
    policy = load_policy(write(tmp_path, '[[rule]]\nmatch = ["whiteboard", "cell phone"]\naction = "redact"\n'))
    assert policy.decide("cell phone").action == "redact"


def test_demo_policy_ships_as_package_data():
    """`privcodec demo` must work from an install, where policies/ does not exist."""
    from privcodec import demo

    assert demo.POLICY.parent == demo.PHOTO.parent == Path(demo.__file__).with_name("data")
    assert demo.POLICY.read_text() == (POLICIES / "faces.toml").read_text()   # the copy has not drifted
    policy = load_policy(demo.POLICY)
    assert policy.decide("face").action == "encrypt" and policy.decide("face").recipients == ("family",)


def test_every_detector_class_passes_the_spelling_check(tmp_path):
    """The typo check must never refuse a class a detector really produces (e.g. 'vase' is two
    edits from 'face')."""
    from privcodec.detect.yolo import COCO_CLASSES

    text = "".join(f'[[rule]]\nmatch = ["{c}"]\naction = "redact"\n' for c in COCO_CLASSES)
    policy = load_policy(write(tmp_path, text))
    assert all(policy.decide(c).action == "redact" for c in COCO_CLASSES)
