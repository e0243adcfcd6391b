"""How often the speaker attribution answers a "who said ...?" question right: the measurement behind
``named_speaker_confidence`` in ``prompts/attribution.toml``.

    python benchmarks/speakers.py            # every "who said" question in ../shared/data's QA files

Each question the attribution rules take for a question about a speaker is answered from its gold paragraph as the
service answers it, without the reader: the sentence holding most of the question's words (at least half) is taken
for the quoted one, and the answer is its speaker as the parse finds it, counted apart when the speaker is a named
person, organisation or group (``Speaker.named``: only those may carry an answer the reader alone would withhold).
An answer is right when its SQuAD F1 against a gold answer is at least 0.5 (an answer to an unanswerable question is
wrong). Prints each answer, the counts, and the lower bound of the 95% Wilson interval of the share right (the
confidence to give such answers). Needs ``../shared/data`` (never copied into the repository).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.relations import qa_data, questions_of, wilson_lower  # noqa: E402
from index.models import Sentence  # noqa: E402
from index.pipeline.sentences import load_nlp  # noqa: E402
from service.answering.attribution import Attributor, load_attribution_rules  # noqa: E402
from service.answering.readers.squad_metrics import score_prediction  # noqa: E402
from service.settings import Settings  # noqa: E402


def main() -> None:
    data = qa_data(__doc__)
    nlp = load_nlp(Settings().spacy_model)
    attributor = Attributor(nlp, load_attribution_rules(ROOT / "prompts" / "attribution.toml"))
    asked = 0
    tally = {True: [0, 0], False: [0, 0]}  # named speaker or not: [answered, right]
    for name, ex in questions_of(data, attributor.asks_for_speaker):
        asked += 1
        sentences = [Sentence(start=s.start_char, end=s.end_char) for s in nlp(ex.context).sents]
        quoted = attributor.quoted_sentence(ex.question, [("p", s.start, ex.context[s.start:s.end])
                                                          for s in sentences])
        if quoted is None:
            continue
        _, start, end = quoted
        speaker = attributor.speaker(ex.context, sentences, start, end)
        if speaker is None:
            continue
        answer = ex.context[speaker.start:speaker.end]
        golds = [text for _, text in ex.answers] if not ex.is_impossible else []
        ok = bool(golds) and score_prediction(golds, answer)[1] >= 0.5
        tally[speaker.named][0] += 1
        tally[speaker.named][1] += ok
        print(f"{'right' if ok else 'wrong'}  {'named' if speaker.named else 'other'}  {name}  "
              f"{ex.question!r} -> {answer!r} (gold {golds[:1] or ['unanswerable']})")
    print(f"\n{asked} questions about a speaker")
    for named, label in ((True, "a named speaker"), (False, "another subject")):
        found, right = tally[named]
        print(f"answered with {label}: {found}, {right} right; 95% Wilson lower bound {wilson_lower(right, found):.2f}")


if __name__ == "__main__":
    main()
