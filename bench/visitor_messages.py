"""What the benchmarks' simulated visitors say: first messages and follow-ups with names, roles,
companies, tools, industries and sizes filled in from a seeded random generator (bench_sdr.py and
load.py share them, so their turns are alike)."""
from __future__ import annotations

import random

FIRST = ["Hi there", "hello", "Hey, quick question", "Hi, I'm {name}, {role} at {company}", "How much does it cost?",
         "Do you integrate with {tool}?", "We're a {industry} company and our forecasts are unreliable"]
FOLLOW = ["we're about {size} people", "team of {size}", "I run RevOps", "VP of Sales", "I manage the sales team",
          "probably next quarter", "hoping to switch before Q3", "budget is approved, ~${budget}k/yr", "{email}",
          "{name}", "{company}", "Is there a free trial?", "Are you SOC 2 compliant?", "how long does onboarding take?",
          "we need better pipeline visibility", "not sure yet", "can I talk to a person?", "What's your refund policy?",
          "Does it work with {tool}?", "{industry}", "thanks!"]
NAMES = ["Dana", "Sam", "Priya", "Lee", "Ana", "Marcus", "Jo", "Kim"]
COMPANIES = ["Acme Health", "Brightline", "Orbit Freight", "Globex", "Tallpine", "Northwind Retail", "Ridgeway Bank"]
ROLES = ["VP of Sales", "Head of RevOps", "sales manager", "CEO", "account executive", "CFO"]
TOOLS = ["Salesforce", "HubSpot", "Zoho CRM", "Trello", "Slack", "Notion", "Gong"]
INDUSTRIES = ["healthcare", "logistics", "retail", "software", "banking", "manufacturing", "education"]


def fill(template: str, rng: random.Random) -> str:
    name = rng.choice(NAMES)
    return template.format(name=name, role=rng.choice(ROLES), company=rng.choice(COMPANIES), tool=rng.choice(TOOLS),
                           industry=rng.choice(INDUSTRIES), size=rng.choice([8, 40, 120, 450, 2000, 9000]),
                           budget=rng.choice([5, 15, 30, 80]), email=f"{name.lower()}{rng.randint(1, 9999)}@corp{rng.randint(1, 99)}.example")
