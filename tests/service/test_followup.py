"""Follow-up resolution: two-turn conversations about the seed articles' story (Saydnaya prison, the crematorium
claim), written for these tests from the facts the seeds report. The first turn is what the service showed; the
second message must be rewritten into a question that stands on its own."""

from __future__ import annotations

import pytest

from service.conversation.followup import FollowupResolver, FollowupRules, PriorTurn, load_followup_rules
from service.settings import REPO_ROOT

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def resolver(nlp) -> FollowupResolver:  # type: ignore[no-untyped-def]
    return FollowupResolver(nlp, load_followup_rules(REPO_ROOT / "prompts" / "followups.toml"))


JONES = PriorTurn(
    "Who said the regime had sunk to a new level of depravity?", "Stuart Jones",
    "The Syrian regime has sunk to a new level of depravity, said Stuart Jones, the acting assistant secretary of "
    "state for Near Eastern affairs.")
MOCK = PriorTurn(
    "Who said there still needs to be a lot of research done?", "Geoffrey Mock",
    '"There still needs to be a lot of research done," said Geoffrey Mock, the Syria country specialist for '
    "Amnesty International USA.")
HALEY = PriorTurn(
    "Who is the US Ambassador to the United Nations?", "Nikki Haley",
    "US Ambassador to the United Nations Nikki Haley said Russia had protected the Assad government.")
AMNESTY = PriorTurn(
    "Which organisation reported that thousands had been secretly hanged?", "Amnesty International",
    "Amnesty International reported in February that thousands of prisoners had been secretly hanged at Saydnaya.")
PHOTOS = PriorTurn(
    "What did the State Department release?", "declassified photographs",
    "The State Department released declassified photographs of a building in the prison complex.")
RUSSIA = PriorTurn(
    "What did Jones call on Russia to do?", "use its influence",
    "Jones called on Russia to use its influence over the Syrian government.")
HANGED = PriorTurn(
    "How many prisoners were hanged at Saydnaya between 2011 and 2015?", "between 5,000 and 13,000",
    "Amnesty said that between 5,000 and 13,000 prisoners were hanged at Saydnaya between 2011 and 2015.")
PRISON = PriorTurn(
    "Which prison is about 45 minutes from Damascus?", "Saydnaya",
    "The Saydnaya military prison is about 45 minutes from Damascus.")
DOUBTERS = PriorTurn(
    "Who doubted the crematorium claim?", "human rights groups",
    "Human rights groups said the satellite photographs were not conclusive.")

CONVERSATIONS = [
    (JONES, "What else did he say?", "What else did Stuart Jones say?"),
    (MOCK, "Which organisation does he work for?", "Which organisation does Geoffrey Mock work for?"),
    (HALEY, "What did she say about Russia?", "What did Nikki Haley say about Russia?"),
    (AMNESTY, "When did it publish its report?", "When did Amnesty International publish its report?"),
    (PHOTOS, "What do they show?", "What do declassified photographs show?"),
    (RUSSIA, "What about Iran?", "What did Jones call on Iran to do?"),
    (HANGED, "And in 2016?", "How many prisoners were hanged at Saydnaya in 2016?"),
    (PRISON, "Who runs it?", "Who runs Saydnaya?"),
    (DOUBTERS, "What did they say about the photographs?",
     "What did human rights groups say about the photographs?"),
    (JONES, "And who denied the claim?", "Who denied the claim?"),
    (MOCK, "What did Jones say?", "What did Jones say?"),
    (HALEY, "And the Russian ambassador?", "Who is the Russian Ambassador to the United Nations?"),
]


@pytest.mark.parametrize(("turn", "message", "expected"), CONVERSATIONS,
                         ids=[f"{c[0].question[:30]}->{c[1]}" for c in CONVERSATIONS])
def test_two_turn_conversations_on_the_seed_story(resolver, turn, message, expected):
    assert resolver.resolve(message, [turn]) == expected


def test_a_first_message_is_left_alone(resolver):
    assert resolver.resolve("  What did he   say? ", []) == "What did he say?"


def test_the_referent_can_be_two_turns_back(resolver):
    # Turn 2 named no person; "he" still finds Geoffrey Mock one turn earlier.
    turns = [MOCK, PriorTurn("Which prison is about 45 minutes from Damascus?", "Saydnaya", None)]
    assert resolver.resolve("What did he say about it?", turns) == "What did Geoffrey Mock say about Saydnaya?"


def test_a_pronoun_inside_a_quote_is_not_touched(resolver):
    message = 'Who said "he has sunk to a new level"?'
    assert resolver.resolve(message, [MOCK]) == message


def test_a_verbless_message_with_nothing_to_swap_stands_alone(resolver):
    assert resolver.resolve("Sednaya?", [JONES]) == "Sednaya?"


def test_rules_naming_an_unknown_kind_are_refused():
    with pytest.raises(ValueError, match="kinds not listed"):
        FollowupRules(lookback_turns=3, pronouns={"he": "person"}, kinds={"thing": ["ORG"]}, swap_groups={},
                      ellipsis={"patterns": [], "max_verbless_words": 3})
