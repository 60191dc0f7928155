"""The shipped eval suite through the model brain, against a local stand-in for a model, beside the rule brain.

    .venv/bin/python bench/eval_model.py                     # both runs, the table side by side
    .venv/bin/python bench/eval_model.py --json model.json --html model.html --no-fail

Why: `sdr eval` measures the SDR's judgment with whatever brain is configured. Offline there is no
model, so this script starts the local OpenAI-compatible test server (tests/fake_openai.py) with a
responder that plays "a competent but literal model", points the SDR at it (SDR_LLM_PROVIDER=openai,
OPENAI_BASE_URL, SDR_LLM_MODEL) and runs the same suite twice in one process: first with the
deterministic rule brain, then with the model brain. The figures show what the model *path* costs and
changes — model calls, prompt/completion tokens, latency, fallbacks, grounding — while the judgment
should stay close to the rules', because the stand-in model reads exactly what the rules read:

- extraction (the `Extraction` tool call ModelBrain forces, prompts/extract.yaml): the stand-in
  runs the SDR's own rule extractor (bot.extract.understand) on the visitor message between <<< >>>,
  with the field the assistant last asked about and today's date from the prompt, and answers those
  facts, the intent, the questions and the requested action as the tool call's arguments;
- the reply (prompts/reply.yaml, not streamed by `sdr eval`): the stand-in writes one short
  sentence per line of the PLAN (greeting, acknowledgement, "Answer ... from source [Sn]" quoted from
  that source's snippet, recommendation with its link, handoff, meeting, and the plan's one question
  verbatim at the end) — its own wording, not the rule brain's templates;
- a revision (the guard rejected a reply): the same, without quoting any source.

Token usage is counted with tiktoken when its encoding is available offline, else as the fake server
does (words); `--tokens` picks. The simulated prospects are the deterministic ones (never
SDR_SIM_MODEL) so both runs face the same prospects; the clock starts at the same fixed instant as
`sdr eval` (--now). Each run has its own scratch database; the sample content is ingested once into
a scratch content store (or --data-dir's, when it already holds content).

Exit code, as `sdr eval`'s for the model run: 0 all as expected; 1 a persona failed (unless
--no-fail); 2 the suite has a mistake; 3 worse than --baseline (--rules-gate: the rules' run too).
"""
from __future__ import annotations

import argparse
import collections
import json
import re
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

EVAL_NOW = "2026-12-01T15:00:00Z"   # = integrations/cli.py EVAL_NOW (checked below)


# ---------------------------------------------------------------------------------------------
# Counting tokens


def token_counter(mode: str) -> tuple[Callable[[str], int] | None, str]:
    """(count(text) or None for the fake server's own word counts, a label)."""
    if mode in ("auto", "tiktoken"):
        try:
            import tiktoken

            enc = tiktoken.get_encoding("o200k_base")   # needs the encoding file cached: no network here
            return (lambda text: len(enc.encode(text, disallowed_special=()))), "tiktoken o200k_base"
        except Exception as e:  # noqa: BLE001 - not installed, or the encoding can't be fetched offline
            if mode == "tiktoken":
                raise SystemExit(f"--tokens tiktoken: {type(e).__name__}: {str(e)[:160]}")
    if mode == "chars":
        return (lambda text: max(1, round(len(text) / 4))), "characters / 4"
    return None, "words (the fake server's count; tiktoken's encoding is not available offline)"


# ---------------------------------------------------------------------------------------------
# The stand-in model


def _text(content: Any) -> str:
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) if isinstance(p, dict) else str(p) for p in content)
    return "" if content is None else str(content)


class LiteralModel:
    """The fake server's default responder: `__call__(request_json) -> step dict`."""

    def __init__(self, count: Callable[[str], int] | None):
        self.count = count
        self.playbook: Any = None          # set once the SDR is built (its playbook)
        self.kinds: collections.Counter[str] = collections.Counter()
        self.notes: collections.Counter[str] = collections.Counter()
        self.chars: collections.Counter[str] = collections.Counter()   # prompt / completion characters, all requests

    # -- dispatch ------------------------------------------------------------------------------

    def __call__(self, body: dict) -> dict:
        msgs = body.get("messages") or []
        system = _text(msgs[0].get("content")) if msgs else ""
        last = _text(msgs[-1].get("content")) if msgs else ""
        tools = [t.get("function", {}).get("name") for t in body.get("tools") or []]
        stream = " (stream)" if body.get("stream") else ""
        try:
            if "Extraction" in tools:
                kind = "extract repair" if "not a valid Extraction" in last else "extract"
                step = {"tool_call": {"name": "Extraction", "arguments": self.extract(system, msgs)}}
            elif "Write the next chat reply" in system:
                revise = "sources don't support" in last
                kind = "reply revise" if revise else "reply"
                step = {"content": self.reply(system, msgs, revise)}
            else:
                kind, step = "other", {"content": "ok"}
        except Exception as e:  # noqa: BLE001 - a bug here must show in the figures, not hang the run
            kind, step = "responder error", {"status": 500, "message": f"{type(e).__name__}: {e}"}
        self.kinds[kind + stream] += 1
        self.chars["prompt"] += sum(len(_text(m.get("content"))) for m in msgs) + len(json.dumps(body.get("tools") or ""))
        self.chars["completion"] += len(step.get("content") or "") + len(json.dumps((step.get("tool_call") or {}).get("arguments") or ""))
        if self.count is not None and step.get("status") is None:
            step["usage"] = self.usage(body, step)
        return step

    def usage(self, body: dict, step: dict) -> dict:
        c = self.count
        assert c is not None
        prompt = sum(c(_text(m.get("content"))) + 4 for m in body.get("messages") or []) + 3
        if body.get("tools"):
            prompt += c(json.dumps(body["tools"]))
        if "tool_call" in step:
            completion = c(json.dumps(step["tool_call"]["arguments"])) + 5
        else:
            completion = c(step.get("content") or "")
        return {"prompt_tokens": prompt, "completion_tokens": max(completion, 1)}

    # -- extraction ----------------------------------------------------------------------------

    def extract(self, system: str, msgs: list[dict]) -> dict:
        """The rule extractor's reading of the visitor message, as the Extraction tool's arguments."""
        from datetime import date

        from bot.extract import understand
        from integrations.llm.model_brain import Extraction

        human = next(_text(m.get("content")) for m in reversed(msgs)
                     if m.get("role") == "user" and "Visitor message:" in _text(m.get("content")))
        asking = re.search(r"Last asked: (.*)", human)
        asked = asking.group(1).strip() if asking else None
        asked = None if asked in (None, "", "nothing") else asked
        known_m = re.search(r"Known: (.*)", human)
        try:
            known = json.loads(known_m.group(1)) if known_m else {}
        except ValueError:
            known = {}
        today_m = re.search(r"today is (\d{4}-\d{2}-\d{2})", system)
        today = date.fromisoformat(today_m.group(1)) if today_m else None
        start = human.index("<<<\n") + 4
        message = human[start:human.rindex("\n>>>")]

        u = understand(message, self.playbook, asked_field=asked, today=today, known=known)
        args: dict[str, Any] = {}
        for name, fact in u.fields.items():
            if name in Extraction.model_fields and fact.value not in (None, ""):
                value = fact.value
                if name == "company_size" and isinstance(value, float) and value.is_integer():
                    value = int(value)
                try:   # a competent model keeps to the schema: drop what it would not accept
                    Extraction(**{name: value})
                except Exception:  # noqa: BLE001
                    self.notes[f"dropped {name}={value!r} (not valid for the schema)"] += 1
                    continue
                args[name] = value
        it = u.intents
        args["intent"] = ("unsubscribe" if "unsubscribe" in it else "human" if "human" in it else
                          "booking" if "book" in it else "question" if "question" in it else
                          "objection" if it & {"objection", "price_objection", "not_interested"} else
                          "answer" if "answer" in it or u.fields else "small_talk")
        action = u.requested_action
        args["requested_action"] = action if action in ("continue", "handoff", "book", "human", "unsubscribe") \
            else "continue"
        args["questions"] = list(u.questions)
        return args

    # -- the reply -----------------------------------------------------------------------------

    def reply(self, system: str, msgs: list[dict], revise: bool) -> str:
        """One sentence per plan line, the plan's question last; sources quoted only from SOURCES."""
        human = next(_text(m.get("content")) for m in msgs if m.get("role") == "user"
                     and "PLAN:" in _text(m.get("content")))
        who = re.search(r"You are (.+?), the website assistant of (.+?) \(", system)
        assistant, company = (who.group(1), who.group(2)) if who else ("the assistant", "us")
        plan = human.split("PLAN:", 1)[1].split("\n\nKNOWN:", 1)[0]
        src_text = human.split("\n\nSOURCES:\n", 1)[1].split("\n\nCONVERSATION:", 1)[0] \
            if "\n\nSOURCES:\n" in human else ""
        sources = {int(n): (title, url, snippet.strip()) for n, title, url, snippet in re.findall(
            r"^\[S(\d+)\] (.*?) \((\S+?)\): (.*?)(?=^\[S\d+\] |\Z)", src_text, re.DOTALL | re.MULTILINE)}
        out, question = [], None
        for line in (ln[2:].strip() for ln in plan.strip().splitlines() if ln.startswith("- ")):
            m = None
            if line.startswith("Greet them briefly"):
                out.append(f"Hi! I'm {assistant} from {company}.")
            elif (m := re.match(r"Acknowledge in a few words what they told you: (.*)\.$", line)):
                out.append(f"Got it: {m.group(1)}.")
            elif (m := re.match(r'Answer "(.*)" from source \[S(\d+)\] only\.$', line)):
                src = sources.get(int(m.group(2)))
                if revise or src is None:
                    out.append("I'd rather not guess on that; I can connect you with someone on the team who knows.")
                else:
                    out.append(f"From \u201c{src[0]}\u201d: {src[2]}")
            elif (m := re.match(r'For ".*": (.+?) is not in our sources\.', line)):
                out.append(f"Not that I know of: {m.group(1)} isn't one I can confirm. "
                           "I can connect you with someone who can.")
            elif line.startswith('For "') and "the sources don't answer it" in line:
                out.append("I don't know that one, and I won't guess; I can connect you with someone on the team.")
            elif line.startswith("Acknowledge their concern"):
                out.append("Fair point.")
            elif line.startswith("Tell them you've asked someone from the team"):
                email = re.search(r"reach them at (\S+?)\.?$", line)
                out.append("Sure, I've asked someone from the team to pick this up"
                           + (f"; they'll reach you at {email.group(1)}." if email else "."))
            elif line.startswith("Tell them you've passed it to the sales team"):
                out.append("Great, I've passed that to the sales team, who will reach out to find a time.")
            elif (m := re.match(r"Tell them the team will set up a (\d+)-minute call(?:; give this link: (\S+?))?", line)):
                out.append(f"Happy to: the team will set up a {m.group(1)}-minute call"
                           + (f", and you can pick a time here: {m.group(2)}" if m.group(2) else
                              ", and the sales team will reach out.") )
            elif (m := re.match(r"Tell them they sound like a strong fit.*offer a (\d+)-minute call(?: via (\S+?))?\.?$", line)):
                out.append(f"You sound like a strong fit, so I've let our sales team know; they'd like a "
                           f"{m.group(1)}-minute call with you" + (f": {m.group(2)}" if m.group(2) else ".")
                           if "- Do not ask any question." in plan else
                           f"You sound like a strong fit, so I've let our sales team know. Would a "
                           f"{m.group(1)}-minute call work?" + (f" {m.group(2)}" if m.group(2) else ""))
            elif (m := re.match(r'Recommend "(.*)" \((\S+)\) in one sentence\.$', line)):
                if not revise:
                    out.append(f"This may help: \u201c{m.group(1)}\u201d \u2014 {m.group(2)}")
            elif (m := re.match(r"End with this one question \(you may rephrase it lightly\): (.*)$", line)):
                question = m.group(1).strip()
            elif line == "Do not ask any question.":
                pass
            else:
                self.notes[f"plan line not understood: {line[:60]}"] += 1
        if question:
            out.append(question)
        text = " ".join(out) or "Thanks for the message."
        facts = self.reply_facts(human) if "\nFACTS {json}" in human and not revise else None
        return text + (f"\nFACTS {json.dumps(facts)}" if facts else "")

    def reply_facts(self, human: str) -> dict[str, Any]:
        """What a literal model reads in the VISITOR message that KNOWN lacks (the rule extractor's reading)."""
        from bot.extract import understand
        from integrations.llm.model_brain import Facts

        known_m = re.search(r"^KNOWN: (.*)$", human, re.MULTILINE)
        try:
            known = json.loads(known_m.group(1)) if known_m else {}
        except ValueError:
            known = {}
        message = human.split("\nVISITOR: ", 1)[1].split("\nAfter the reply, if the VISITOR", 1)[0].strip()
        u = understand(message, self.playbook, known=known)
        out: dict[str, Any] = {}
        for name, fact in u.fields.items():
            if name in Facts.model_fields and known.get(name) in (None, "") and fact.value not in (None, ""):
                out[name] = fact.value
        if out:
            self.notes["reply call read facts the profile lacked"] += 1
        return out


# ---------------------------------------------------------------------------------------------
# Running the suite as `sdr eval` does


def build(args: argparse.Namespace, data_dir: Path, db: Path, model: dict[str, str] | None) -> Any:
    """The SDR as `sdr eval` builds it (integrations.wiring.build_sdr), on its own scratch database."""
    from bot.settings import Settings
    from integrations.wiring import build_sdr

    llm = {"llm_provider": "openai", "openai_base_url": model["base_url"], "openai_api_key": "test",
           "llm_model": model["name"]} if model else {"llm_provider": "none"}
    settings = Settings.from_env(data_dir=data_dir, playbook_path=args.playbook, database_url=f"sqlite:///{db}",
                                 embedding_provider="local", **llm)
    return build_sdr(settings)


def run_one(sdr: Any, args: argparse.Namespace, label: str) -> dict:
    from evals.run import load_cases, run_suite, ticking_clock
    from integrations.cli import SAMPLE

    personas = load_cases(list(args.suites) or None, sdr.playbook)
    if args.channel:
        personas = [{**p, "channel": args.channel} for p in personas]
    if sdr.kb.count() == 0:
        report = sdr.kb.ingest([str(SAMPLE)], prune=False, progress=not args.quiet)
        if report.errors:
            raise SystemExit(f"ingesting the sample content failed: {report.errors}")
    if args.now != "wall":
        sdr.clock = ticking_clock(args.now)
    # The embedder is process-wide and remembers query vectors: the second run would find every
    # query of the first one cached and look ~100 ms a search faster. Each run starts cold, as a
    # fresh `sdr eval` process does.
    cache = getattr(sdr.kb.embedder, "_cache", None)
    if hasattr(cache, "clear"):
        cache.clear()
    print(f"-- {label}: {len(personas)} personas, brain {sdr.brain.name}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()   # after the ingest: the run's own time
    report = run_suite(sdr, personas, k=args.k, seed=args.seed, model=False, progress=not args.quiet)
    report["meta"]["wall_s"] = round(time.perf_counter() - t0, 1)
    report["meta"]["counters"] = dict(sdr.counters)
    return report


def reply_authors(sdr: Any) -> collections.Counter[str]:
    """Who worded the stored replies: the model, or the rules (fixed words, a fallback, the guard's safe reply)."""
    from sqlalchemy import select

    from bot.store import Message

    with sdr.store.session() as s:
        return collections.Counter(str((m.meta or {}).get("model")) for m in
                                   s.scalars(select(Message).where(Message.role == "agent")))


def fmt(key: str, v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float) and key.endswith(("accuracy", "precision", "recall", "right", "qualified", "fit")):
        return f"{v:.1%}"
    return f"{v}"


def print_table(rules: dict, model: dict, model_name: str) -> None:
    rows: list[tuple[str, Any, Any]] = []
    for r in (rules, model):
        m = r["meta"]
        m["passed_text"] = f"{m['passed']}/{m['personas'] - m['skipped']}" + (f" ({m['skipped']} skipped)" if m["skipped"] else "")
    rows.append(("personas passed", rules["meta"]["passed_text"], model["meta"]["passed_text"]))
    keys = list(rules["summary"]) + [k for k in rules["metrics"] if k not in rules["summary"]]
    order = ["field_accuracy", "handoff_precision", "handoff_recall", "disqualify_accuracy", "grounding_violations",
             "model_calls_per_turn", "prompt_tokens_per_turn", "completion_tokens_per_turn", "latency_ms_p50",
             "latency_ms_p95"]
    keys = order + [k for k in keys if k not in order]
    for k in keys:
        a = {**rules["summary"], **rules["metrics"]}.get(k)
        b = {**model["summary"], **model["metrics"]}.get(k)
        rows.append((k, fmt(k, a), fmt(k, b)))
    rows.append(("wall time of the run (s)", rules["meta"]["wall_s"], model["meta"]["wall_s"]))
    rows.append(("guard fallbacks (counter)", rules["meta"]["counters"].get("guard_fallbacks", 0),
                 model["meta"]["counters"].get("guard_fallbacks", 0)))
    w = max(len(r[0]) for r in rows) + 2
    head_b = f"model ({model_name} @ fake)"
    print(f"\n  {'metric':<{w}}{'rules':>16}  {head_b:>26}")
    print(f"  {'-' * (w + 44)}")
    for name, a, b in rows:
        mark = "" if str(a) == str(b) else "   *"
        print(f"  {name:<{w}}{a!s:>16}  {b!s:>26}{mark}")
    print("  (* differs)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="bench/eval_model.py",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=__doc__.split("\n\n", 1)[0],
        epilog=__doc__.split("\n\n", 2)[2])
    ap.add_argument("suites", nargs="*", metavar="SUITE",
                    help="persona YAML files, as `sdr eval SUITE...` (default: the shipped suite)")
    ap.add_argument("--k", type=int, default=1, help="runs per persona, pass^k (default 1)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the simulated prospects' phrasings (default 0)")
    ap.add_argument("--now", default=EVAL_NOW, help=f"the instant the conversations start, as `sdr eval --now` "
                                                    f"(default {EVAL_NOW}; 'wall' for the real clock)")
    ap.add_argument("--channel", choices=["chat", "form", "email"], help="run every persona through this channel")
    ap.add_argument("--playbook", help="playbook YAML (default: SDR_PLAYBOOK or the bundled one)")
    ap.add_argument("--model-name", default="local-literal", help="SDR_LLM_MODEL sent to the fake server")
    ap.add_argument("--tokens", choices=["auto", "tiktoken", "words", "chars"], default="auto",
                    help="how the fake counts usage: tiktoken if its encoding loads offline (auto), the fake's "
                         "word counts, or characters/4")
    ap.add_argument("--data-dir", type=Path, help="content store to use (ingested with the sample content when "
                                                  "empty); default: a scratch one, removed afterwards")
    ap.add_argument("--json", dest="json_out", help="write the model run's report here (`sdr eval --json` shape)")
    ap.add_argument("--html", dest="html_out", help="write the model run's HTML report here")
    ap.add_argument("--rules-json", help="write the rule brain's report here too")
    ap.add_argument("--rules-html", help="write the rule brain's HTML report here too")
    ap.add_argument("--baseline", help="an `sdr eval --json` report: exit 3 when the model run is worse by more "
                                       "than --max-drop (latency not gated)")
    ap.add_argument("--max-drop", type=float, default=0.02, help="as `sdr eval --max-drop` (default 0.02)")
    ap.add_argument("--rules-gate", action="store_true", help="apply --baseline to the rules' run too")
    ap.add_argument("--no-fail", action="store_true", help="exit 0 when personas fail (the baseline gate still applies)")
    ap.add_argument("-v", "--verbose", action="store_true", help="a line per persona for both runs, not only the "
                                                                 "ones that failed or differ")
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)

    from evals.metrics import compare
    from evals.run import CaseError
    from integrations import cli

    assert cli.EVAL_NOW == EVAL_NOW, "integrations/cli.py changed its fixed --now; update EVAL_NOW here"
    from fake_openai import FakeOpenAI

    count, count_label = token_counter(args.tokens)
    responder = LiteralModel(count)
    scratch = tempfile.TemporaryDirectory(prefix="sdr-eval-model-")
    data_dir = args.data_dir or Path(scratch.name) / "data"
    fake = FakeOpenAI(default=responder, models=[args.model_name]).start()
    try:
        try:
            rules_sdr = build(args, data_dir, Path(scratch.name) / "rules.db", None)
            rules = run_one(rules_sdr, args, "rules")
            model_sdr = build(args, data_dir, Path(scratch.name) / "model.db",
                              {"base_url": fake.base_url, "name": args.model_name})
            responder.playbook = model_sdr.playbook
            model = run_one(model_sdr, args, "model")
        except CaseError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        requests = fake.requests
        authors = reply_authors(model_sdr)
    finally:
        fake.stop()

    rb = {p["name"]: p for p in rules["personas"]}
    print(f"\nper persona ({'all' if args.verbose else 'failed or different in either run'}):")
    shown = 0
    for p in model["personas"]:
        r = rb.get(p["name"], {})
        if p["skipped"]:
            if args.verbose:
                print(f"  skip  {p['name']:<42} {p['skipped']}")
            continue
        differ = (r.get("passed"), r.get("stage"), r.get("turns")) != (p["passed"], p["stage"], p["turns"]) \
            or r.get("failures") != p["failures"]
        if not args.verbose and r.get("passed") and p["passed"] and not differ:
            continue
        shown += 1
        for label, x in (("rules", r), ("model", p)):
            mark = "pass" if x.get("passed") else "FAIL"
            print(f"  {label:<5} {mark}  {p['name']:<42} stage {x.get('stage')!s:<14} turns {x.get('turns', 0):>2}  "
                  + "; ".join(x.get("failures") or []))
    if not shown:
        print("  (none)")

    print_table(rules, model, args.model_name)
    print(f"\n  brains: rules = {rules['meta']['brain']}, model = {model['meta']['brain']}"
          f" (fake OpenAI server at {fake.base_url}); prospects: deterministic, seed {args.seed}, k={args.k}")
    print(f"  tokens counted by: {count_label}")
    kinds = ", ".join(f"{k} {n}" for k, n in responder.kinds.most_common()) or "none"
    print(f"  fake server: {len(requests)} chat-completions requests ({kinds})")
    tool_choice = collections.Counter(json.dumps(r.get("tool_choice"), sort_keys=True) for r in requests if r.get("tools"))
    if tool_choice:
        print("  extraction requests' tool_choice: " + ", ".join(f"{k} x{n}" for k, n in tool_choice.items()))
    turns = model["metrics"]["turns"]
    print(f"  model turns: {turns}; requests per turn {len(requests) / max(turns, 1):.2f}; as characters / 4 "
          f"(closer to real tokens than words): prompt {responder.chars['prompt'] / 4 / max(turns, 1):.1f}, "
          f"completion {responder.chars['completion'] / 4 / max(turns, 1):.1f} per turn")
    falls = {k[len("fallback_"):]: n for k, n in model["meta"]["counters"].items() if k.startswith("fallback_")}
    print("  model brain fell back to the rules (causes): "
          + (", ".join(f"{c} {n}" for c, n in sorted(falls.items())) or "never"))
    print("  model run's replies worded by: " + ", ".join(f"{a} {n}" for a, n in authors.most_common()))
    for note, n in responder.notes.most_common():
        print(f"  stand-in model: {note} (x{n})")

    for report, j, h in ((model, args.json_out, args.html_out), (rules, args.rules_json, args.rules_html)):
        if j:
            Path(j).write_text(json.dumps(report, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
            print(f"  report: {j}")
        if h:
            from evals.report import write_html
            write_html(report, h)
            print(f"  html report: {h}")

    code = 0
    if args.baseline:
        base = json.loads(Path(args.baseline).read_text(encoding="utf-8"))["summary"]
        gated = [("model", model)] + ([("rules", rules)] if args.rules_gate else [])
        for label, report in gated:
            for line in compare(report["summary"], base, args.max_drop):
                print(f"worse than the baseline ({label}): {line}", file=sys.stderr)
                code = 3
    if code == 0 and not args.no_fail:
        m = model["meta"]
        if m["passed"] < m["personas"] - m["skipped"]:
            code = 1
    scratch.cleanup()
    return code


if __name__ == "__main__":
    sys.exit(main())
