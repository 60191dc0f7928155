"""Form-fill webhooks (issue 12, item 1): POST /webhooks/forms/<generic|typeform|webflow|hubspot>.

Each source's documented body (tests/data/forms/, realistic values) is signed the way the provider
signs it and read into the expected FormFill; then every refusal — unknown or unconfigured source,
missing/bad signature, stale timestamp, non-JSON, malformed body (the message names the field),
oversized, hostile bytes — is checked against the real app, and none of them creates anything or
reaches `sdr.receive_form`. Time comes from the test clock, never the wall clock.
"""
from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr
from sqlalchemy import func, select

from bot.store import Base
from integrations.forms.form_fill import FormFill
from integrations.forms.form_sources import parse
from integrations.forms.generic_form import sign_generic
from integrations.forms.hubspot_workflow import decode_uri, sign_hubspot
from integrations.forms.typeform import sign_typeform
from integrations.forms.webflow import sign_webflow

DATA = Path(__file__).parent / "data" / "forms"
SECRETS = {"generic": "gen-form-secret-0123456789", "typeform": "tf-webhook-secret-abcdef",
           "webflow": "wf-client-secret-fedcba", "hubspot": "hs-client-secret-00112233"}
SETTINGS = {"form_secret": SecretStr(SECRETS["generic"]), "typeform_secret": SecretStr(SECRETS["typeform"]),
            "webflow_secret": SecretStr(SECRETS["webflow"]), "hubspot_client_secret": SecretStr(SECRETS["hubspot"])}
FIXTURE = {"generic": "generic.json", "typeform": "typeform.json", "webflow": "webflow.json",
           "hubspot": "hubspot_contact.json"}
LOCAL = "http://localhost/webhooks/forms/"
SUBMITTED = datetime(2026, 1, 13, 14, 59, 30)


def body_of(name: str) -> bytes:
    return (DATA / name).read_bytes()


def unix(clock: Any) -> float:
    return clock().replace(tzinfo=timezone.utc).timestamp()


def sign(source: str, body: bytes, at: float, url: str | None = None, secret: str | None = None) -> dict[str, str]:
    """The headers `source`'s provider puts on `body` sent at unix second `at`."""
    secret = secret or SECRETS[source]
    if source == "generic":
        return {"X-SDR-Signature": sign_generic(secret, body, int(at))}
    if source == "typeform":
        return sign_typeform(secret, body)
    if source == "webflow":
        return sign_webflow(secret, body, int(at * 1000))
    return sign_hubspot(secret, "POST", url or LOCAL + "hubspot", body, int(at * 1000))


@pytest.fixture
def world(make_sdr):
    """(sdr, test client, calls to receive_form): every source configured; the SDR's receive_form
    is a recorder, so the HTTP path is tested whatever the state of the real intake."""
    from integrations.web.app import create_app

    sdr = make_sdr(settings=SETTINGS, load_knowledge=False)   # a webhook never reads the content store
    calls: list[FormFill] = []

    def receive_form(fill: FormFill) -> dict[str, Any]:
        calls.append(fill)
        return {"accepted": True, "duplicate": False}

    sdr.receive_form = receive_form
    app = create_app(sdr)
    app.testing = True
    return sdr, app.test_client(), calls


def rows(sdr: Any) -> int:
    """Rows in every table of the store: leads, conversations, messages, outbox, ..."""
    with sdr.store.session() as s:
        return sum(s.scalar(select(func.count()).select_from(t)) or 0 for t in Base.metadata.sorted_tables)


def assert_refused(r: Any, status: int, code: str | None, world: Any) -> dict[str, Any]:
    sdr, _, calls = world
    assert r.status_code == status, r.get_data(as_text=True)
    err = r.get_json()["error"]
    if code:
        assert err["code"] == code, err
    assert not calls and rows(sdr) == 0 and sdr.store.list_leads() == []
    return err


def post(client: Any, source: str, body: bytes, headers: dict[str, str], content_type: str = "application/json",
         **kw: Any) -> Any:
    return client.post(f"/webhooks/forms/{source}", data=body, headers=headers, content_type=content_type, **kw)


# -- the documented bodies, read ------------------------------------------------------------------

EXPECTED = {
    "generic.json": FormFill(
        source="generic", event_id="sub_01JH7Q2M4X8Z3K", form_name="Book a demo", submitted_at=SUBMITTED,
        fields={"email": "dana.reyes@mapleclinics.example", "first_name": "Dana", "last_name": "Reyes",
                "company": "Maple Clinics", "job_title": "VP of Sales Operations", "company_size": "1200",
                "interests": "Forecasting, Pipeline reviews", "wants_newsletter": "no",
                "message": "We run 40 clinics and our forecast lives in spreadsheets. Can we see a demo next week?",
                "utm_source": "linkedin", "utm_campaign": "q1-forecasting",
                "page_url": "https://www.pipelark.example/demo?utm_source=linkedin&utm_campaign=q1-forecasting"}),
    "typeform.json": FormFill(
        source="typeform", event_id="01JH7Q6T0V3W9B8N5R2K4M6P1S", form_name="Talk to sales", submitted_at=SUBMITTED,
        fields={"utm_source": "google", "utm_campaign": "brand-search", "page_url": "https://www.pipelark.example/pricing",
                "first_name": "Sam", "last_name": "Okafor", "email": "sam.okafor@brightline.example",
                "company": "Brightline Logistics", "job_title": "Head of Revenue Operations", "company_size": "201-500",
                "interests": "Forecasting, Deal scoring, Slack alerts", "seats": "45", "phone": "+442071838750",
                "website": "https://brightline.example", "call_ok": "yes", "start_date": "2026-02-01",
                "message": "We need a forecast our board trusts. Do you integrate with Salesforce?"}),
    "webflow.json": FormFill(
        source="webflow", event_id="6321ca84df3949bfc6752327", form_name="Contact Sales",
        submitted_at=datetime(2026, 1, 13, 14, 59, 30, 117000),
        fields={"First Name": "Priya", "Last Name": "Nair", "email": "priya.nair@harbourfin.example",
                "Company": "Harbour Financial", "Job Title": "Director of Sales", "Company Size": "51-200",
                "Phone Number": "15550000000",
                "Message": "Looking to replace our pipeline spreadsheet before Q2. What does it cost for 20 reps?",
                "utm_source": "newsletter", "utm_campaign": "jan-digest", "page_url": "https://www.pipelark.example/contact"}),
    "hubspot_contact.json": FormFill(
        source="hubspot", event_id="0b1c3d2e-7a5f-4c1b-9e8d-1f2a3b4c5d6e", form_name="Demo request",
        submitted_at=SUBMITTED,
        fields={"email": "leo.martin@northpeak.example", "firstname": "Leo", "lastname": "Martin",
                "company": "Northpeak Software", "jobtitle": "Chief Revenue Officer", "numemployees": "501-1000",
                "message": "Our reps spend Fridays updating the CRM. Could Pipelark do that for them?",
                "utm_source": "g2", "utm_campaign": "comparison-page", "lastmodifieddate": "1768316371204",
                "createdate": "1768316370000", "page_url": "https://www.pipelark.example/demo"}),
    "hubspot_flat.json": FormFill(
        source="hubspot", event_id="51012:1768316371204", form_name="Demo request", submitted_at=SUBMITTED,
        fields={"hs_object_id": "51012", "email": "leo.martin@northpeak.example", "firstname": "Leo",
                "lastname": "Martin", "company": "Northpeak Software", "jobtitle": "Chief Revenue Officer",
                "numemployees": "501-1000",
                "message": "Our reps spend Fridays updating the CRM. Could Pipelark do that for them?",
                "utm_source": "g2", "utm_campaign": "comparison-page",
                "hs_analytics_first_url": "https://www.pipelark.example/compare",
                "recent_conversion_event_name": "Demo request", "recent_conversion_date": "1768316370000",
                "lastmodifieddate": "1768316371204"}),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_sources_documented_body_signed_as_the_provider_signs_it_reads_into_one_form_fill(name, clock):
    source = EXPECTED[name].source
    body, now = body_of(name), unix(clock)
    fill = parse(source, sign(source, body, now), body, secret=SECRETS[source], now=now, urls=[LOCAL + source])
    assert fill == EXPECTED[name]
    assert list(fill.fields) == list(EXPECTED[name].fields)   # in the order the form sent them


@pytest.mark.parametrize("source", sorted(FIXTURE))
def test_a_signed_submission_is_handed_to_the_sdr_and_answered_202(world, clock, source):
    sdr, client, calls = world
    body = body_of(FIXTURE[source])
    r = post(client, source, body, sign(source, body, unix(clock)))
    assert r.status_code == 202, r.get_json()
    assert r.get_json() == {"accepted": True, "duplicate": False}
    assert calls == [EXPECTED[FIXTURE[source]]]


def test_the_real_intake_accepts_a_signed_generic_fill(make_sdr, clock):
    from integrations.web.app import create_app

    sdr = make_sdr(settings=SETTINGS)   # the real intake may run the turn, which reads the content store
    client = create_app(sdr).test_client()
    body = body_of("generic.json")
    r = post(client, "generic", body, sign("generic", body, unix(clock)))
    assert r.status_code == 202, r.get_json()
    assert r.get_json()["accepted"] is True


# -- which sources answer ---------------------------------------------------------------------------

def test_an_unknown_source_is_404(world, clock):
    body = body_of("generic.json")
    err = assert_refused(post(world[1], "jotform", body, sign("generic", body, unix(clock))), 404,
                         "unknown_form_source", world)
    assert "unknown form source" in err["message"]


@pytest.mark.parametrize("source", sorted(FIXTURE))
def test_a_source_without_its_secret_is_404_and_never_reads_unsigned_data(make_sdr, clock, source):
    from integrations.web.app import create_app

    sdr = make_sdr(load_knowledge=False)   # no form secrets at all
    body = body_of(FIXTURE[source])
    r = post(create_app(sdr).test_client(), source, body, sign(source, body, unix(clock)))
    assert r.status_code == 404 and r.get_json()["error"]["code"] == "form_source_not_configured"
    assert "form source not configured" in r.get_json()["error"]["message"] and rows(sdr) == 0


# -- signatures -------------------------------------------------------------------------------------

@pytest.mark.parametrize("source", sorted(FIXTURE))
def test_a_missing_signature_is_401(world, source):
    body = body_of(FIXTURE[source])
    assert_refused(post(world[1], source, body, {}), 401, "bad_signature", world)


@pytest.mark.parametrize("source", sorted(FIXTURE))
def test_a_signature_made_with_another_secret_or_over_another_body_is_401(world, clock, source):
    body = body_of(FIXTURE[source])
    forged = sign(source, body, unix(clock), secret="not-the-secret-at-all")
    assert_refused(post(world[1], source, body, forged), 401, "bad_signature", world)
    tampered = body.replace(b"example", b"exampl3", 1)
    assert_refused(post(world[1], source, tampered, sign(source, body, unix(clock))), 401, "bad_signature", world)


@pytest.mark.parametrize("source", ["generic", "webflow", "hubspot"])
@pytest.mark.parametrize("minutes", [-6, 6])
def test_a_timestamp_more_than_five_minutes_off_is_stale(world, clock, source, minutes):
    """Signed now, delivered six minutes later (a replay) or six minutes early (a skewed clock)."""
    body = body_of(FIXTURE[source])
    headers = sign(source, body, unix(clock))
    clock.advance(minutes=minutes)
    err = assert_refused(post(world[1], source, body, headers), 401, "stale", world)
    assert "300 s" in err["message"] or "5 minutes" in err["message"]


@pytest.mark.parametrize("source", ["generic", "webflow", "hubspot"])
def test_within_five_minutes_a_signature_is_still_good(world, clock, source):
    body = body_of(FIXTURE[source])
    headers = sign(source, body, unix(clock))
    clock.advance(minutes=4)
    assert post(world[1], source, body, headers).status_code == 202


def test_typeform_signs_no_timestamp_so_an_old_delivery_is_not_refused_for_its_age(world, clock):
    """Typeform retries for hours with the same body and signature; its event_id makes a retry a
    duplicate (the intake's job), so age is no reason to refuse it."""
    body = body_of("typeform.json")
    headers = sign("typeform", body, unix(clock))
    clock.advance(days=2)
    assert post(world[1], "typeform", body, headers).status_code == 202


def test_hubspot_signs_the_public_url_with_the_escapes_it_documents_decoded(make_sdr, clock):
    """Behind a proxy the app sees http://localhost; HubSpot called SDR_PUBLIC_URL with a query."""
    from integrations.web.app import create_app

    sdr = make_sdr(settings={**SETTINGS, "public_url": "https://sdr.example"}, load_knowledge=False)
    sdr.receive_form = lambda fill: {"accepted": True, "duplicate": False}
    client = create_app(sdr).test_client()
    body = body_of("hubspot_flat.json")
    called = "https://sdr.example/webhooks/forms/hubspot?portal=62515&list=a%3Ab%2Cc"
    assert decode_uri(called) == "https://sdr.example/webhooks/forms/hubspot?portal=62515&list=a:b,c"
    r = client.post("/webhooks/forms/hubspot?portal=62515&list=a%3Ab%2Cc", data=body, content_type="application/json",
                    headers=sign("hubspot", body, unix(clock), url=called))
    assert r.status_code == 202, r.get_json()
    elsewhere = sign("hubspot", body, unix(clock), url="https://attacker.example/webhooks/forms/hubspot")
    r = client.post("/webhooks/forms/hubspot?portal=62515", data=body, content_type="application/json", headers=elsewhere)
    assert r.status_code == 401 and r.get_json()["error"]["code"] == "bad_signature"


# -- bodies ---------------------------------------------------------------------------------------------

def _without(data: dict[str, Any], path: str) -> dict[str, Any]:
    *parents, last = path.split(".")
    node = data
    for p in parents:
        node = node[p]
    del node[last]
    return data


MALFORMED = [   # (source, how the documented body is broken, the field the 400 must name)
    ("typeform", lambda d: _without(d, "form_response.answers"), "form_response.answers"),
    ("typeform", lambda d: _without(d, "form_response"), "form_response"),
    ("typeform", lambda d: _without(d, "event_id"), "event_id"),
    ("typeform", lambda d: {**d, "form_response": {**d["form_response"], "answers": {"a": 1}}}, "form_response.answers"),
    ("typeform", lambda d: {**d, "form_response": {**d["form_response"], "answers": [{"type": "text", "text": "x"}]}},
     "form_response.answers[0].field"),
    ("typeform", lambda d: {**d, "form_response": {**d["form_response"], "answers": [
        {"type": "text", "text": "x", "field": {"type": "short_text"}}]}}, "form_response.answers[0].field.ref"),
    ("typeform", lambda d: {**d, "event_type": "form_response_partial"}, "event_type"),
    ("webflow", lambda d: _without(d, "payload.data"), "payload.data"),
    ("webflow", lambda d: _without(d, "triggerType"), "triggerType"),
    ("webflow", lambda d: {**d, "payload": [1, 2]}, "payload"),
    ("webflow", lambda d: {**d, "triggerType": "site_publish"}, "triggerType"),
    ("webflow", lambda d: {**d, "payload": {**d["payload"], "data": {"email": {"nested": "garbage"}}}},
     "payload.data.email"),
    ("webflow", lambda d: {**d, "payload": {**d["payload"], "data": {}}}, "payload.data"),
    ("hubspot", lambda d: {**d, "properties": ["email"]}, "properties"),
    ("hubspot", lambda d: {**d, "properties": {"email": {"value": {"deep": [1]}}}}, "properties.email.value"),
    ("generic", lambda d: {**d, "company": {"name": "Maple"}}, "company"),
    ("generic", lambda d: {"event_id": "only-metadata"}, "the body"),
]


@pytest.mark.parametrize("source,breaks,field", MALFORMED, ids=[f"{s}-{f}" for s, _, f in MALFORMED])
def test_a_body_missing_a_documented_field_is_400_naming_it(world, clock, source, breaks, field):
    data = breaks(json.loads(body_of(FIXTURE[source])))
    body = json.dumps(data).encode()
    err = assert_refused(post(world[1], source, body, sign(source, body, unix(clock))), 400, "bad_form_body", world)
    assert err["message"].startswith(field), err["message"]


@pytest.mark.parametrize("source", sorted(FIXTURE))
def test_a_body_that_is_no_object_is_400(world, clock, source):
    for body in (b"[1, 2, 3]", b'"just a string"', b"null", b"42", b"[]"):
        err = assert_refused(post(world[1], source, body, sign(source, body, unix(clock))), 400, "bad_form_body", world)
        assert "object" in err["message"], (body, err)


def test_a_signed_body_that_is_not_json_is_400_malformed_json(world, clock):
    """Signed correctly (so the body is what is wrong): bad syntax, non-UTF-8 bytes, NaN, empty, depth."""
    for body in (b"{not json", b"\xff\xfe{\x00", b'{"email": "\xe9t\xe9"}', b"", b'{"n": NaN}',
                 b"[" * 5000 + b"]" * 5000, b'{"a":' * 40 + b"1" + b"}" * 40):
        r = post(world[1], "generic", body, sign("generic", body, unix(clock)))
        assert_refused(r, 400, "malformed_json", world)


def test_a_body_that_is_not_json_is_415(world, clock):
    body = body_of("generic.json")
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data", "application/jsonx", ""):
        r = post(world[1], "generic", body, sign("generic", body, unix(clock)), content_type=content_type)
        assert_refused(r, 415, "unsupported_media_type", world)


def test_an_oversized_body_is_413_as_json_also_when_chunked(world, clock):
    sdr, client, _ = world
    limit = sdr.settings.max_body_bytes
    data = json.loads(body_of("generic.json"))
    data["message"] = "x" * (limit + 10)
    body = json.dumps(data).encode()
    assert_refused(post(client, "generic", body, sign("generic", body, unix(clock))), 413, "body_too_large", world)
    import io
    r = client.post("/webhooks/forms/generic", input_stream=io.BytesIO(body), content_type="application/json",
                    headers={**sign("generic", body, unix(clock)), "Transfer-Encoding": "chunked"},
                    environ_overrides={"wsgi.input_terminated": True})
    assert_refused(r, 413, "body_too_large", world)


def test_numbers_keep_the_digits_the_visitor_typed_and_booleans_read_yes_or_no(clock):
    body = json.dumps({"email": "a@b.example"}).encode()[:-1] + \
        b', "employees": 123456789012345678901234567890, "budget": 4.50, "exp": 1e400, "ok": true}'
    now = unix(clock)
    fill = parse("generic", sign("generic", body, now), body, secret=SECRETS["generic"], now=now)
    assert fill.fields == {"email": "a@b.example", "employees": "123456789012345678901234567890", "budget": "4.50",
                           "exp": "1e400", "ok": "yes"}


@pytest.mark.parametrize("headers", [
    {"X-SDR-Signature": "t=١٢٣,v1=ab"},                         # non-ASCII digits
    {"X-SDR-Signature": "t=123,v1=\u00e9\u00e9"},               # non-ASCII hex
    {"Typeform-Signature": "sha256=\u00e9"},
    {"x-webflow-timestamp": "\u00e91", "x-webflow-signature": "ab"},
    {"x-webflow-timestamp": "9" * 40, "x-webflow-signature": "ab"},
    {"X-HubSpot-Signature-v3": "\u00e9==", "X-HubSpot-Request-Timestamp": "1"},
])
def test_hostile_headers_are_401_never_500(world, headers):
    body = body_of("generic.json")
    for source in FIXTURE:
        r = post(world[1], source, body, {k: v.encode("utf-8").decode("latin-1") for k, v in headers.items()})
        assert_refused(r, 401, "bad_signature", world)


def test_hostile_but_signed_bodies_are_4xx_never_500(world, clock):
    hostile = [b'{"email": "\\ud800"}', b'{"\\u0000": "x"}', b'{"a": [[[[{}]]]]}', b'{"a": 1e999999}',
               b'{"form_response": {"answers": [null, 1, "x"]}, "event_id": "e", "event_type": "form_response"}',
               b'{"triggerType": "form_submission", "payload": {"data": {"x": [1, {"y": 2}]}}}',
               b'{"properties": {"email": null}, "form-submissions": "nope"}', b'{"' + b"k" * 300 + b'": "v"}']
    for source in FIXTURE:
        for body in hostile:
            r = post(world[1], source, body, sign(source, body, unix(clock)))
            assert r.status_code < 500, (source, body, r.get_data(as_text=True))
            if r.status_code != 202:
                assert r.get_json()["error"]["code"] in ("bad_form_body", "malformed_json")
    assert rows(world[0]) == 0


# -- generated hostile input --------------------------------------------------------------------------

_leaf = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**80), max_value=2**80), st.floats(allow_nan=False),
                  st.text(max_size=40))
_json = st.recursive(_leaf, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                   st.dictionaries(st.text(max_size=12), kids, max_size=5)),
                     max_leaves=25)
_shaped = st.one_of(   # near the documented shapes, so the checks past the envelope are reached too
    _json,
    st.fixed_dictionaries({"event_id": _json, "event_type": st.sampled_from(["form_response", "x"]),
                           "form_response": st.fixed_dictionaries({"answers": st.lists(st.fixed_dictionaries(
                               {"type": st.sampled_from(["text", "choice", "choices", "payment", "number", "odd"]),
                                "field": _json, "text": _json, "choice": _json, "choices": _json, "payment": _json}),
                               max_size=3), "hidden": _json, "definition": _json})}),
    st.fixed_dictionaries({"triggerType": st.just("form_submission"),
                           "payload": st.fixed_dictionaries({"data": _json, "id": _json, "submittedAt": _json})}),
    st.fixed_dictionaries({"properties": _json, "form-submissions": _json, "vid": _json}))


@settings(max_examples=int(os.environ.get("SDR_FUZZ_EXAMPLES", "100")), deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(source=st.sampled_from(sorted(FIXTURE)), data=_shaped, raw=st.binary(max_size=200), signed=st.booleans())
def test_generated_bodies_signed_or_not_never_get_a_5xx_nor_create_anything(world, clock, source, data, raw, signed):
    body = json.dumps(data).encode() if signed else raw
    r = post(world[1], source, body, sign(source, body, unix(clock)) if signed else {"X-SDR-Signature": "t=1,v1=00"})
    assert r.status_code in ((202, 400) if signed else (401,)), (r.status_code, r.get_data(as_text=True))
    assert r.is_json and rows(world[0]) == 0
