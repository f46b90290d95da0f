"""Generate the labelled retrieval set: memories of several users of one companion, and questions with the
ids of the memories that answer them.

Deterministic: the same seed writes byte-identical files (no clock, no network). The content is written
here by hand as topics; each user draws a value and a phrasing per topic, so sentences vary between users.
Version 1's questions are worded away from the answers; version 2 keeps v1 as it was and adds chit-chat and
lexical questions that repeat the answer's rare words, as real users ask (README.md, "Why v2").

    .venv/bin/python bench/retrieval/generate.py            # writes bench/retrieval/data/*.jsonl
    .venv/bin/python bench/retrieval/generate.py --check    # fails if the committed files differ
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).resolve().parent / "data"
DATASET_VERSION = "2"
SEED = 20260311
TEST_SHARE = 0.3
# Conversations run from January 2024 to June 2025; "now" for the companion is 1 July 2025.
FIRST_MONTH = date(2024, 1, 1)
MONTHS = 18

MONTH_NAMES = [
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
]  # fmt: skip


@dataclass(frozen=True)
class Person:
    slug: str
    name: str
    sub: str
    obj: str
    pos: str

    def slot(self, template: str) -> str:
        """A value put inside a sentence: pronouns filled, case kept."""
        return template.format(Name=self.name, sub=self.sub, obj=self.obj, pos=self.pos)

    def fill(self, template: str, **values: str) -> str:
        """A whole sentence: slots and pronouns filled, first letter capitalised."""
        text = template.format(Name=self.name, sub=self.sub, obj=self.obj, pos=self.pos, **values)
        return text[0].upper() + text[1:]


SHE = {"sub": "she", "obj": "her", "pos": "her"}
HE = {"sub": "he", "obj": "him", "pos": "his"}

PEOPLE = [
    Person("maya", "Maya", **SHE),
    Person("daniel", "Daniel", **HE),
    Person("priya", "Priya", **SHE),
    Person("tomasz", "Tomasz", **HE),
    Person("aiko", "Aiko", **SHE),
    Person("samuel", "Samuel", **HE),
    Person("elena", "Elena", **SHE),
    Person("jonah", "Jonah", **HE),
    Person("fatima", "Fatima", **SHE),
    Person("kwame", "Kwame", **HE),
]

# --- Single-memory topics ---------------------------------------------------------------------------------
# Each topic: the memory type and importance, a list of values (each a dict of slots, and the questions that
# fit that value), and phrasings of the memory. Questions are paraphrases: they say what a companion would
# ask itself mid-conversation, mostly without the answer's words.

TOPICS: list[dict[str, Any]] = [
    {
        "key": "allergy",
        "type": "fact",
        "importance": 9,
        "memory": [
            "{Name} is allergic to {thing}; {sub} carries an adrenaline pen since a bad reaction at 15.",
            "{Name} told me {sub} has a serious {thing} allergy and reads every label twice.",
        ],
        "values": [
            {
                "thing": "peanuts",
                "q": [
                    "Is there anything {sub} must never eat, even a trace of?",
                    "Would a satay sauce be safe to suggest to {obj}?",
                ],
            },
            {
                "thing": "shellfish",
                "q": [
                    "Can I recommend a prawn dish for {pos} dinner?",
                    "Which foods could put {obj} in hospital?",
                ],
            },
            {
                "thing": "penicillin",
                "q": [
                    "Which medicine must a doctor never give {obj}?",
                    "Does {sub} react badly to any antibiotic?",
                ],
            },
            {
                "thing": "sesame",
                "q": [
                    "Would hummus or tahini be a problem for {obj}?",
                    "What ingredient makes {obj} dangerously ill?",
                ],
            },
            {
                "thing": "kiwi fruit",
                "q": [
                    "Which fruit should never go into a smoothie for {obj}?",
                    "Is there an ingredient that gives {obj} a reaction?",
                ],
            },
        ],
    },
    {
        "key": "job",
        "type": "fact",
        "importance": 7,
        "memory": [
            "{Name} works as {job} at {place}.",
            "{Name} mentioned {sub} has been {job} for about four years now, at {place}.",
        ],
        "values": [
            {
                "job": "a paediatric nurse",
                "place": "the children's ward of St Bride's hospital",
                "q": ["What does {sub} do for a living?", "Does {sub} look after sick kids professionally?"],
            },
            {
                "job": "a backend developer",
                "place": "a small logistics startup",
                "q": ["How does {sub} earn money?", "Is {pos} day spent writing code?"],
            },
            {
                "job": "a chemistry teacher",
                "place": "Hillside secondary school",
                "q": ["What is {pos} occupation?", "Does {sub} stand in front of a classroom every day?"],
            },
            {
                "job": "a sous-chef",
                "place": "a tapas bar near the harbour",
                "q": ["What line of work is {sub} in?", "Does {sub} cook professionally?"],
            },
            {
                "job": "a structural engineer",
                "place": "a firm that designs footbridges",
                "q": [
                    "What's {pos} profession?",
                    "Does {sub} have anything to do with building things at work?",
                ],
            },
            {
                "job": "a freelance translator",
                "place": "a small agency, mostly legal contracts from Spanish",
                "q": ["What pays {pos} bills?", "Does {sub} commute to an office?"],
            },
        ],
    },
    {
        "key": "coffee",
        "type": "preference",
        "importance": 3,
        "memory": [
            "{Name} drinks {drink} first thing every morning and can't function before it.",
            "{Name} said the only way {sub} starts the day is with {drink}.",
        ],
        "values": [
            {"drink": "a double espresso, no sugar", "q": ["How does {sub} take {pos} morning caffeine?"]},
            {"drink": "oat-milk flat white", "q": ["What's {pos} usual order at a café?"]},
            {"drink": "strong black tea with a splash of milk", "q": ["What's {pos} wake-up beverage?"]},
            {"drink": "green matcha latte", "q": ["What does {sub} sip to get going in the morning?"]},
        ],
    },
    {
        "key": "food_love",
        "type": "preference",
        "importance": 5,
        "memory": [
            "{Name} adores {food}; {sub} says {sub} could eat it every single day.",
            "{Name}'s comfort meal is {food}.",
        ],
        "values": [
            {
                "food": "spicy tonkotsu ramen",
                "q": [
                    "What dish cheers {obj} up after a long week?",
                    "If I suggest a noodle place, what would {sub} order?",
                ],
            },
            {"food": "{pos} grandmother's lasagne", "q": ["What's {pos} favourite thing to eat?"]},
            {
                "food": "chicken biryani from the place on Mill Road",
                "q": ["What should I suggest for a takeaway night?"],
            },
            {"food": "pierogi with fried onions", "q": ["Which home-style dish does {sub} crave most?"]},
            {"food": "sushi, especially salmon nigiri", "q": ["What's {pos} go-to meal for a treat?"]},
        ],
    },
    {
        "key": "food_hate",
        "type": "preference",
        "importance": 4,
        "memory": [
            "{Name} can't stand {food}; the texture makes {obj} gag.",
            "{Name} refuses to eat {food} in any form.",
        ],
        "values": [
            {"food": "mushrooms", "q": ["Which ingredient should I leave out if I share a risotto recipe?"]},
            {"food": "coriander", "q": ["Is there a herb {sub} hates?"]},
            {"food": "olives", "q": ["What should never be on {pos} pizza?"]},
            {"food": "raw tomatoes", "q": ["What salad ingredient does {sub} pick out?"]},
            {"food": "blue cheese", "q": ["Which item on a cheeseboard would {sub} avoid?"]},
        ],
    },
    {
        "key": "music",
        "type": "preference",
        "importance": 4,
        "memory": [
            "{Name} has had {artist} on repeat lately, mostly while {context}.",
            "{Name} says {artist} is what {sub} puts on when {context}.",
        ],
        "values": [
            {
                "artist": "old Fleetwood Mac records",
                "context": "cleaning the flat",
                "q": [
                    "What does {sub} listen to around the house?",
                    "Which band should I mention if we talk about songs?",
                ],
            },
            {
                "artist": "Nils Frahm's piano pieces",
                "context": "working late",
                "q": ["What helps {obj} concentrate at night?"],
            },
            {
                "artist": "Afrobeats playlists",
                "context": "running",
                "q": ["What's in {pos} headphones during exercise?"],
            },
            {"artist": "Taylor Swift", "context": "driving", "q": ["Which singer is {sub} a fan of?"]},
            {
                "artist": "Coltrane and other fifties jazz",
                "context": "cooking",
                "q": ["What soundtrack goes with {pos} time in the kitchen?"],
            },
        ],
    },
    {
        "key": "fear",
        "type": "fact",
        "importance": 5,
        "memory": [
            "{Name} admitted {sub} is terrified of {fear}, ever since childhood.",
            "{Name} gets panicky around {fear}.",
        ],
        "values": [
            {
                "fear": "deep open water",
                "q": ["Would a snorkelling trip be a good idea for {obj}?", "What scares {obj}?"],
            },
            {
                "fear": "flying",
                "q": ["How does {sub} cope with airplanes?", "What makes {obj} anxious when travelling?"],
            },
            {"fear": "spiders", "q": ["Which creepy-crawly freaks {obj} out?"]},
            {"fear": "heights", "q": ["Would {sub} enjoy a glass-floored observation deck?"]},
            {"fear": "hospitals and needles", "q": ["Why does {sub} put off blood tests?"]},
        ],
    },
    {
        "key": "instruction_style",
        "type": "instruction",
        "importance": 8,
        "memory": [
            "{Name} asked me to {rule}.",
            "Instruction from {Name}: {rule}.",
        ],
        "values": [
            {
                "rule": "keep replies short and skip the motivational pep talk",
                "q": ["How long should my answers to {obj} be?", "Does {sub} like being cheered on?"],
            },
            {
                "rule": "never bring up {pos} ex, Marco, unless {sub} mentions him first",
                "q": ["Is there a person I should not raise in conversation?"],
            },
            {
                "rule": "call {obj} Mo rather than by {pos} full name",
                "q": ["What nickname does {sub} prefer?", "How should I address {obj}?"],
            },
            {
                "rule": "answer in Portuguese when {sub} writes in Portuguese",
                "q": ["Which language should I reply in?"],
            },
            {
                "rule": "not use emojis in any message",
                "q": ["Are little pictures and smileys welcome in my texts?"],
            },
        ],
    },
    {
        "key": "instruction_reminder",
        "type": "instruction",
        "importance": 8,
        "memory": [
            "{Name} wants a reminder {reminder}.",
            "{Name} asked me to nudge {obj} {reminder}.",
        ],
        "values": [
            {"reminder": "to take {pos} thyroid tablet at 7 am", "q": ["Which pill must {sub} not forget?"]},
            {
                "reminder": "every Sunday evening to plan the week's meals",
                "q": ["What weekly chore should I prompt?"],
            },
            {
                "reminder": "to stretch {pos} back every two hours at the desk",
                "q": ["How can I help with {pos} posture?"],
            },
            {
                "reminder": "to call {pos} mum on Thursdays",
                "q": ["Which family call should I prompt each week?"],
            },
            {
                "reminder": "to drink water during long shifts",
                "q": ["What should I remind {obj} about to stay hydrated?"],
            },
        ],
    },
    {
        "key": "goal",
        "type": "fact",
        "importance": 6,
        "memory": [
            "{Name} is working towards {goal}.",
            "{Name}'s big goal this year is {goal}.",
        ],
        "values": [
            {"goal": "running the Berlin marathon in September", "q": ["What race is {sub} preparing for?"]},
            {
                "goal": "finishing a 100 km charity cycle ride",
                "q": ["What sporting challenge is {sub} working towards?"],
            },
            {"goal": "swimming a mile of open water", "q": ["What endurance target has {sub} set?"]},
            {"goal": "passing the B2 German exam", "q": ["Which qualification is {sub} studying for?"]},
            {"goal": "climbing Ben Nevis with {pos} dad", "q": ["Which mountain does {sub} want to summit?"]},
        ],
    },
    {
        "key": "home",
        "type": "fact",
        "importance": 6,
        "memory": [
            "{Name} lives in {home} in {city} with {mate}.",
            "{Name} shares {home} in {city} with {mate}.",
        ],
        "values": [
            {
                "home": "a top-floor flat",
                "city": "Leeds",
                "mate": "two housemates",
                "q": ["Where is {pos} place?", "Who does {sub} share a roof with?"],
            },
            {
                "home": "a narrow terraced house",
                "city": "Bristol",
                "mate": "{pos} partner",
                "q": ["Which city is {sub} based in?"],
            },
            {
                "home": "a studio apartment",
                "city": "Lisbon",
                "mate": "nobody but a cactus",
                "q": ["Does {sub} live alone?", "In what town does {sub} reside?"],
            },
            {
                "home": "a canal boat",
                "city": "Oxford",
                "mate": "{pos} partner",
                "q": ["What's unusual about {pos} living situation?"],
            },
            {
                "home": "a rented cottage",
                "city": "the outskirts of Galway",
                "mate": "{pos} grandmother",
                "q": ["Where does {sub} stay and with whom?"],
            },
        ],
    },
    {
        "key": "birthday",
        "type": "fact",
        "importance": 7,
        "memory": [
            "{Name}'s birthday is on {day}.",
            "{Name} was born on {day}.",
        ],
        "values": [
            {"day": "14 February", "q": ["When should I wish {obj} many happy returns?"]},
            {"day": "2 August", "q": ["What date does {sub} turn a year older?"]},
            {"day": "30 November", "q": ["When is {pos} special day each year?"]},
            {"day": "9 April", "q": ["Which day do I send {obj} congratulations on getting older?"]},
            {"day": "21 June, the longest day", "q": ["When does {sub} celebrate another year?"]},
        ],
    },
    {
        "key": "health",
        "type": "fact",
        "importance": 7,
        "memory": [
            "{Name} has {condition}.",
            "{Name} mentioned living with {condition} for years.",
        ],
        "values": [
            {
                "condition": "migraines, usually set off by bright screens",
                "q": ["What tends to give {obj} headaches?"],
            },
            {
                "condition": "mild asthma that flares up in cold air",
                "q": ["Why does {sub} struggle to breathe on winter runs?"],
            },
            {
                "condition": "a dodgy left knee from years of football",
                "q": ["Which joint gives {obj} trouble?"],
            },
            {"condition": "insomnia, worst before big deadlines", "q": ["Why might {sub} be awake at 3 am?"]},
            {
                "condition": "coeliac disease, so no gluten at all",
                "q": ["Can I suggest a bakery for {pos} breakfast?"],
            },
        ],
    },
    {
        "key": "show",
        "type": "preference",
        "importance": 3,
        "memory": [
            "{Name} is hooked on {show} and watches an episode most nights.",
            "{Name} recommended {show} to me twice.",
        ],
        "values": [
            {"show": "the Great British Bake Off", "q": ["What does {sub} watch on television?"]},
            {"show": "Succession", "q": ["Which series is {sub} into?"]},
            {
                "show": "nature documentaries narrated by Attenborough",
                "q": ["What's {pos} favourite kind of TV?"],
            },
            {"show": "Korean thrillers on Netflix", "q": ["What does {sub} stream in the evenings?"]},
        ],
    },
    {
        "key": "book",
        "type": "preference",
        "importance": 3,
        "memory": [
            "{Name} re-reads {book} every summer.",
            "{Name}'s all-time favourite novel is {book}.",
        ],
        "values": [
            {"book": "The Left Hand of Darkness", "q": ["Which story does {sub} keep going back to?"]},
            {"book": "Pride and Prejudice", "q": ["What's the one book {sub} loves above all?"]},
            {"book": "One Hundred Years of Solitude", "q": ["Which author should I mention to {obj}?"]},
            {"book": "Dune", "q": ["What reading would {sub} call a classic?"]},
        ],
    },
    {
        "key": "reflection_mood",
        "type": "reflection",
        "importance": 5,
        "memory": [
            "{Name} gets quiet and short whenever {trigger} comes up; I think {sub} {reading}.",
            "I've noticed {Name} deflects with jokes about {trigger}; probably {sub} {reading}.",
        ],
        "values": [
            {
                "trigger": "{pos} father",
                "reading": "still hasn't made peace with how they left things",
                "q": ["How does {sub} feel about {pos} dad?"],
            },
            {
                "trigger": "money",
                "reading": "worries about debt more than {sub} lets on",
                "q": ["Is {sub} anxious about finances?"],
            },
            {
                "trigger": "{pos} weight",
                "reading": "is sensitive about it after comments from relatives",
                "q": ["Should I avoid remarks about {pos} body?"],
            },
            {
                "trigger": "university",
                "reading": "regrets dropping out",
                "q": ["What does {sub} feel about not finishing {pos} degree?"],
            },
            {
                "trigger": "moving abroad",
                "reading": "feels torn between two countries",
                "q": ["Does {sub} feel settled where {sub} is?"],
            },
        ],
    },
    {
        "key": "reflection_support",
        "type": "reflection",
        "importance": 5,
        "memory": [
            "{Name} seems to open up most when {condition}.",
            "Reflection: {Name} responds best when {condition}.",
        ],
        "values": [
            {
                "condition": "I ask practical questions instead of about feelings",
                "q": ["What approach helps {obj} talk?"],
            },
            {"condition": "we talk late at night after work", "q": ["When is {sub} most willing to share?"]},
            {"condition": "I share a small story first", "q": ["How do I get {obj} to confide in me?"]},
            {"condition": "there is humour in the conversation", "q": ["What tone makes {obj} comfortable?"]},
        ],
    },
]

# Small talk: low importance, present for every user, and sharing vocabulary with many questions ("she
# said", "likes", "day") so it attracts queries as chit-chat does in real conversation logs.
SMALL_TALK = [
    "{Name} said hi and that the weather was grim again today.",
    "{Name} said {sub} was tired and just wanted to chat for a bit.",
    "{Name} asked what I thought about the news but didn't want to go into it.",
    "{Name} said {sub} likes talking to me in the evenings.",
    "{Name} joked that {sub} needs a holiday from {pos} holiday.",
    "{Name} said the day was fine, nothing special happened.",
    "{Name} told me {sub} would be busy this week and might not write much.",
    "{Name} said thanks for listening yesterday.",
]

# --- Dated experiences (temporal questions) ---------------------------------------------------------------
# Several experiences of one kind per user (two concerts, two trips...) so only the date tells them apart.

EXPERIENCES: list[dict[str, Any]] = [
    {
        "kind": "concert",
        "memory": "{Name} went to a {x} concert and came home with no voice left.",
        "xs": ["Arctic Monkeys", "Florence and the Machine", "Wet Leg", "Stormzy", "Hozier"],
        "q": "Which gig did {sub} go to in {when}?",
    },
    {
        "kind": "trip",
        "memory": "{Name} spent a long weekend in {x} and loved the food markets.",
        "xs": ["Porto", "Kraków", "Naples", "Edinburgh", "Seville", "Ljubljana"],
        "q": "Where did {sub} travel in {when}?",
    },
    {
        "kind": "injury",
        "memory": "{Name} {x} and had to rest for a couple of weeks.",
        "xs": [
            "sprained an ankle on a hike",
            "broke a wrist falling off a bike",
            "pulled a hamstring at five-a-side",
            "cracked a rib slipping on ice",
        ],
        "q": "What happened to {pos} body in {when}?",
    },
    {
        "kind": "family",
        "memory": "{Name}'s {x} came to stay and {sub} showed them around town.",
        "xs": ["parents", "aunt from Toronto", "cousins", "grandmother"],
        "q": "Who visited {obj} in {when}?",
    },
    {
        "kind": "work",
        "memory": "{Name} {x} at work and celebrated with colleagues.",
        "xs": [
            "got promoted to team lead",
            "finished a huge project",
            "passed probation",
            "won an internal award",
        ],
        "q": "What good news did {sub} have about {pos} job in {when}?",
    },
    {
        "kind": "wedding",
        "memory": "{Name} went to the wedding of {x} and gave a toast.",
        "xs": ["an old school friend", "a colleague", "a cousin", "a flatmate from university"],
        "q": "Whose celebration did {sub} attend in {when}?",
    },
    {
        "kind": "course",
        "memory": "{Name} started an evening class in {x}.",
        "xs": ["pottery", "Italian", "life drawing", "salsa", "creative writing"],
        "q": "What did {sub} begin learning in {when}?",
    },
    {
        "kind": "move",
        "memory": "{Name} moved into a new flat {x} after months of searching.",
        "xs": ["near the park", "closer to work", "with a small garden", "above a bakery"],
        "q": "What big change at home happened in {when}?",
    },
]

# --- Two-memory chains (multi-hop) --------------------------------------------------------------------------
# The first memory names an entity, the second says something about it by name only; the question names
# neither, so a single-pass ranker must find both.

CHAINS: list[dict[str, Any]] = [
    {
        "key": "pet",
        "first": "{Name} has a {animal} called {x}, {desc}.",
        "second": "{x} {event}.",
        "values": [
            {
                "animal": "rescue greyhound",
                "x": "Biscuit",
                "desc": "who sleeps twenty hours a day",
                "event": "had knee surgery and spent a week in a cone",
            },
            {
                "animal": "ginger cat",
                "x": "Marmalade",
                "desc": "who hates the postman",
                "event": "went missing for three days and turned up at the neighbour's",
            },
            {
                "animal": "border collie",
                "x": "Pepper",
                "desc": "who needs two long walks a day",
                "event": "swallowed a sock and needed an operation",
            },
            {
                "animal": "pair of budgies",
                "x": "Kiwi and Mango",
                "desc": "who chatter all morning",
                "event": "learned to whistle the theme from The Simpsons",
            },
            {
                "animal": "tortoise",
                "x": "Gustav",
                "desc": "who is older than {obj}",
                "event": "stopped eating after hibernation and needed a vet visit",
            },
        ],
        "q": ["What trouble did {pos} animal get into?", "What's the latest news about {pos} pet?"],
    },
    {
        "key": "sibling",
        "first": "{Name}'s {rel} is called {x} and is two years {age}.",
        "second": "{x} moved to {city} {reason}.",
        "values": [
            {
                "rel": "sister",
                "x": "Lena",
                "age": "younger",
                "city": "Melbourne",
                "reason": "for a research post",
            },
            {
                "rel": "brother",
                "x": "Kofi",
                "age": "older",
                "city": "Montreal",
                "reason": "to be with his girlfriend",
            },
            {
                "rel": "sister",
                "x": "Anya",
                "age": "older",
                "city": "Copenhagen",
                "reason": "after landing a design job",
            },
            {
                "rel": "brother",
                "x": "Mateo",
                "age": "younger",
                "city": "Singapore",
                "reason": "with his bank",
            },
            {
                "rel": "sister",
                "x": "Hana",
                "age": "younger",
                "city": "Vancouver",
                "reason": "to study medicine",
            },
        ],
        "q": ["In which city does {pos} {rel} live now?", "How far away is {pos} {rel} these days?"],
    },
    {
        "key": "partner",
        "first": "{Name}'s partner is {x}, who works as {pjob}.",
        "second": "{x} {event}.",
        "values": [
            {"x": "Sam", "pjob": "a firefighter", "event": "proposed on the beach at sunset"},
            {"x": "Noor", "pjob": "an architect", "event": "started a PhD in urban planning"},
            {
                "x": "Jamie",
                "pjob": "a primary-school teacher",
                "event": "had a bike accident and broke a collarbone",
            },
            {"x": "Ines", "pjob": "a vet", "event": "opened her own clinic"},
            {"x": "Chris", "pjob": "a sound engineer", "event": "went on tour for two months"},
        ],
        "q": [
            "What big thing happened to {pos} significant other?",
            "Any recent news about the person {sub} is dating?",
        ],
    },
]

# Near-miss memories: same topic, different person; the question asks about the other person, and the
# user's own memory on the topic is the trap (recorded as a distractor).
NEAR_MISS: list[dict[str, Any]] = [
    {
        "topic": "food_hate",
        "memory": "{Name}'s best friend {x} can't bear {y}, which made their dinner party awkward.",
        "values": [
            {"x": "Grace", "y": "anything spicy"},
            {"x": "Ollie", "y": "fish of any kind"},
            {"x": "Bea", "y": "eggs"},
        ],
        "q": "Which food does {pos} best friend dislike?",
    },
    {
        "topic": "job",
        "memory": "{Name}'s flatmate {x} works nights as {y}.",
        "values": [
            {"x": "Raj", "y": "a taxi dispatcher"},
            {"x": "Zoe", "y": "a hotel receptionist"},
            {"x": "Luis", "y": "a bakery supervisor"},
        ],
        "q": "What does the person {sub} lives with do for work?",
    },
    {
        "topic": "allergy",
        "memory": "{Name}'s nephew {x} is allergic to {y}, so {sub} checks snacks when babysitting.",
        "values": [{"x": "Theo", "y": "dairy"}, {"x": "Ivy", "y": "eggs"}, {"x": "Max", "y": "tree nuts"}],
        "q": "What must the little boy or girl {sub} babysits avoid?",
    },
    {
        "topic": "birthday",
        "memory": "{Name}'s mum turns sixty on {y}, and {sub} is planning a surprise.",
        "values": [{"y": "3 March"}, {"y": "18 October"}, {"y": "5 December"}],
        "q": "When is {pos} mother's big milestone party?",
    },
]


# --- Version 2: chit-chat and lexical questions -------------------------------------------------------------
# v1 has no realistic small talk (six lines a user) and no question that repeats the answer's rare words,
# so a keyword ranker has nothing to contribute on it. Real conversational memory has both: chit-chat
# turns that a dense model pulls in for any query, and questions that name the pet, the person, the code,
# the brand or the flight they are about (DESIGN.md §3). v2 adds them after v1's content, drawn from their
# own random stream, so v1's memories and questions stay byte for byte as they were (ids, order, split).

WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
WEATHER = [
    "it's been raining since the morning",
    "it's grey and drizzly again",
    "the sun finally came out",
    "it's freezing and windy",
    "it's muggy and too warm",
]

# Chit-chat: no lasting fact in any of them, but the everyday words of food, work, family, music, pets,
# travel, sleep and health that questions use. Importance 1-2 as an extractor would give them.
CHIT_CHAT: list[tuple[str, str, int]] = [
    ("experience", "{Name} said {sub}'s tired today and {weather}.", 1),
    (
        "experience",
        "{Name} and I laughed about the weather; {sub} said it can't decide between sun and hail.",
        1,
    ),
    (
        "experience",
        "{Name} said {sub} had leftovers for lunch at {pos} desk and they were nothing special.",
        1,
    ),
    ("experience", "{Name} mentioned the bus was twenty minutes late again this morning.", 1),
    ("experience", "{Name} said {sub} spent the evening on the sofa watching whatever was on.", 1),
    (
        "experience",
        "{Name} told me about a funny video of a dog on a skateboard and couldn't stop laughing.",
        1,
    ),
    ("experience", "{Name} said work was slow on {weekday} and {sub} mostly answered emails.", 1),
    ("experience", "{Name} said {sub} might go for a walk later if the rain stops.", 1),
    ("experience", "{Name} said {pos} phone battery died halfway through the day.", 1),
    ("experience", "{Name} complained that {weekday}s are the worst and {sub} needs more coffee.", 1),
    ("experience", "{Name} said {sub} called {pos} mum for a quick chat, nothing new at home.", 2),
    ("experience", "{Name} said {sub} sang along to the radio in the car, badly, and enjoyed it.", 1),
    ("experience", "{Name} said the neighbours' music kept {obj} up a bit last night.", 1),
    (
        "experience",
        "{Name} said {sub} felt a bit under the weather on {weekday} but it was nothing serious.",
        2,
    ),
    ("experience", "{Name} said {sub} tidied the kitchen and felt oddly proud of it.", 1),
    ("experience", "{Name} said the weekend went by too fast, as always.", 1),
    ("experience", "{Name} said {sub} tried a new recipe for dinner and it was just okay.", 1),
    ("experience", "{Name} asked how my day was and said {pos} own was uneventful.", 1),
    ("reflection", "{Name} seemed cheerful today and just wanted some light conversation.", 2),
    ("reflection", "{Name} sounded a little flat today; probably just because {weather}.", 2),
    ("experience", "{Name} said {sub} was scrolling through old holiday photos and felt nostalgic.", 1),
    ("experience", "{Name} said a friend texted about meeting up sometime, but nothing is planned.", 1),
    ("experience", "{Name} said the supermarket was out of {pos} usual bread and it threw {obj} off.", 1),
    ("experience", "{Name} saw a cat sitting in a shop window and said it made {pos} day.", 1),
    ("experience", "{Name} said {sub} went to bed early because there was nothing good on TV.", 1),
    ("experience", "{Name} forgot {pos} umbrella and got soaked on the way home; {weather}.", 1),
    ("experience", "{Name} said it was so hot that {sub} just lay in front of the fan all afternoon.", 1),
    ("experience", "{Name} was stuck in a long meeting on {weekday} that could have been an email.", 1),
    ("experience", "{Name} said {sub} laughed at an old sitcom rerun for an hour.", 1),
    ("experience", "{Name} said {sub} read a few pages of something before falling asleep.", 1),
    ("experience", "{Name} said {sub} has no plans for the weekend and that is the plan.", 1),
    ("experience", "{Name} went for a short run but said it was too cold to enjoy it.", 1),
    (
        "experience",
        "{Name} had a bit of a headache this afternoon, probably from not drinking enough water.",
        2,
    ),
    ("experience", "{Name} said {sub}'s been thinking about a haircut but can't be bothered.", 1),
    ("experience", "{Name} said the train home was packed and someone ate crisps loudly the whole way.", 1),
    ("experience", "{Name} wished me a nice evening and logged off early.", 1),
    ("reflection", "{Name} was chattier than usual today; nothing in particular on {pos} mind.", 2),
    ("experience", "{Name} said {sub} ordered a takeaway because {sub} couldn't face cooking.", 1),
    ("experience", "{Name} said a colleague brought cake to the office and it made the afternoon.", 1),
    ("experience", "{Name} said {sub} spent {weekday} evening doing laundry and listening to a podcast.", 1),
]
CHIT_CHAT_PER_USER = 20

# Details with rare words (names, codes, numbers, brands, rare hobbies), and lexical questions: they repeat
# the rare word(s) the way a person asks ("What time does FI455 leave?") while the rest is paraphrased.
# Several details of one shape per user (a GP and a dentist, a neighbour and an old friend) so the rare
# word, not the gist, tells them apart.
DETAILS: list[dict[str, Any]] = [
    {
        "key": "gp",
        "type": "fact",
        "importance": 6,
        "memory": (
            "{Name}'s GP is Dr {doc} at the {practice} surgery; {sub} has a check-up booked for {date}."
        ),
        "values": [
            {
                "doc": "Okafor",
                "practice": "Eastgate",
                "date": "3 September",
                "q": ["When is {pos} next visit to Dr Okafor?"],
            },
            {
                "doc": "Lindqvist",
                "practice": "Riverside",
                "date": "12 March",
                "q": ["When does {sub} see Dr Lindqvist again?", "Which practice is Dr Lindqvist at?"],
            },
            {
                "doc": "Abara",
                "practice": "Claremont",
                "date": "20 January",
                "q": ["What date is the appointment with Dr Abara?"],
            },
            {
                "doc": "Whitcombe",
                "practice": "Holloway Road",
                "date": "8 July",
                "q": ["When has {sub} got to go and see Dr Whitcombe?"],
            },
            {
                "doc": "Szabo",
                "practice": "Market Street",
                "date": "27 May",
                "q": ["Is {sub} due to see Dr Szabo soon?"],
            },
        ],
    },
    {
        "key": "dentist",
        "type": "experience",
        "importance": 5,
        "memory": "{Name}'s dentist, Dr {doc}, told {obj} {news}.",
        "values": [
            {
                "doc": "Marchetti",
                "news": "a back molar needs a crown before Christmas",
                "q": ["What did Dr Marchetti say about {pos} teeth?"],
            },
            {
                "doc": "Ferreira",
                "news": "to stop grinding at night and wear a mouth guard",
                "q": ["What did Ferreira advise at the last check?"],
            },
            {
                "doc": "Nakashima",
                "news": "{pos} wisdom tooth has to come out",
                "q": ["What news did {sub} get from Nakashima?"],
            },
            {
                "doc": "Pritchard",
                "news": "{sub} needs two fillings and a proper clean",
                "q": ["What work does Pritchard want to do on {obj}?"],
            },
            {
                "doc": "Oyelaran",
                "news": "{pos} gums are much healthier than last year",
                "q": ["How did the visit to Dr Oyelaran go?"],
            },
        ],
    },
    {
        "key": "gate_code",
        "type": "fact",
        "importance": 6,
        "memory": (
            "{Name} gave me the code for the gate at {street}, {code}, in case a parcel needs collecting."
        ),
        "values": [
            {
                "street": "Kessler Street",
                "code": "4471",
                "q": ["Which number gets a courier in at Kessler Street?"],
            },
            {"street": "Alder Mews", "code": "1985#", "q": ["What's the entry code for Alder Mews?"]},
            {
                "street": "Quayside Court",
                "code": "7302",
                "q": ["How do I get through the Quayside Court gate?"],
            },
            {
                "street": "Pembury Road",
                "code": "C2468",
                "q": ["What do you key in at the Pembury Road entrance?"],
            },
            {"street": "Hollis Yard", "code": "0519", "q": ["Which digits open Hollis Yard?"]},
        ],
    },
    {
        "key": "gym_locker",
        "type": "fact",
        "importance": 3,
        "memory": "{Name} keeps {pos} kit in locker {n} at {gym}, with the padlock set to {combo}.",
        "values": [
            {
                "n": "112",
                "gym": "PureGym Holloway",
                "combo": "3-8-1",
                "q": ["What's the combination for locker 112?"],
            },
            {
                "n": "47",
                "gym": "the Anytime Fitness on Baker Lane",
                "combo": "9-0-4",
                "q": ["Which locker does {sub} use at Anytime Fitness?"],
            },
            {
                "n": "208",
                "gym": "the Castlefield leisure centre",
                "combo": "2-2-7",
                "q": ["How does {sub} open {pos} locker at Castlefield?"],
            },
            {
                "n": "65",
                "gym": "Third Space",
                "combo": "5-1-6",
                "q": ["Where does {sub} leave {pos} stuff at Third Space?"],
            },
            {
                "n": "31",
                "gym": "the YMCA on Tottenham Road",
                "combo": "8-3-3",
                "q": ["What's on the padlock of locker 31?"],
            },
        ],
    },
    {
        "key": "car",
        "type": "fact",
        "importance": 4,
        "memory": "{Name} drives a {car}, registration {reg}, which {sub} calls {nick}.",
        "values": [
            {
                "car": "silver Skoda Fabia",
                "reg": "KP19 XRT",
                "nick": "the Tin Can",
                "q": ["What's the number plate on the Skoda?"],
            },
            {
                "car": "battered Volvo V70",
                "reg": "LD08 MWK",
                "nick": "Old Bessie",
                "q": ["What kind of car is Old Bessie?"],
            },
            {
                "car": "red Fiat Panda",
                "reg": "YT16 HBN",
                "nick": "Pomodoro",
                "q": ["Why does {sub} talk about Pomodoro?", "What's the Panda's registration?"],
            },
            {
                "car": "second-hand Nissan Leaf",
                "reg": "EV21 LFA",
                "nick": "Sparky",
                "q": ["Which vehicle is Sparky?"],
            },
            {
                "car": "green Mini Cooper",
                "reg": "MN12 GRN",
                "nick": "Pickle",
                "q": ["What car does {sub} mean by Pickle?"],
            },
        ],
    },
    {
        "key": "neighbour",
        "type": "fact",
        "importance": 4,
        "memory": "{Name}'s neighbour {who} {help}.",
        "values": [
            {
                "who": "Mrs Abernathy",
                "help": "waters the tomatoes whenever {Name} is away",
                "q": ["What does Mrs Abernathy do for {obj}?"],
            },
            {
                "who": "Mr Fenwick",
                "help": "takes in {pos} parcels and always wants a chat about cricket",
                "q": ["How does Fenwick help {obj} out?"],
            },
            {
                "who": "Dorota from downstairs",
                "help": "lends {obj} tools and fixed {pos} dripping tap",
                "q": ["What has Dorota done for {obj}?"],
            },
            {
                "who": "old Mr Quigley",
                "help": "plays the trombone at 7 am every Sunday",
                "q": ["Why does {sub} grumble about Quigley?"],
            },
            {
                "who": "Bashir next door",
                "help": "clears the snow from both paths every winter",
                "q": ["What does Bashir do in winter?"],
            },
        ],
    },
    {
        "key": "rare_hobby",
        "type": "experience",
        "importance": 4,
        "memory": "{Name} has taken up {hobby} and goes {where} on Saturday mornings.",
        "values": [
            {
                "hobby": "bell-ringing",
                "where": "to the tower of St Aldhelm's",
                "q": ["Where does {sub} practise bell-ringing?"],
            },
            {
                "hobby": "kintsugi, mending broken bowls with gold",
                "where": "to a studio in Hackney",
                "q": ["When does {sub} do the kintsugi class?"],
            },
            {
                "hobby": "fly-tying for trout fishing",
                "where": "to a club above the angling shop",
                "q": ["Where did {sub} learn fly-tying?"],
            },
            {
                "hobby": "bouldering",
                "where": "to the Arch climbing wall",
                "q": ["Which wall does {sub} go bouldering at?"],
            },
            {
                "hobby": "birdwatching for nightjars and woodlarks",
                "where": "out to the heath",
                "q": ["Has {sub} seen any nightjars yet?"],
            },
        ],
    },
    {
        "key": "purchase",
        "type": "experience",
        "importance": 3,
        "memory": "{Name} ordered {item} from {shop} and it arrived {state}.",
        "values": [
            {
                "item": "an Ooni pizza oven",
                "shop": "Lakeland",
                "state": "with a cracked stone",
                "q": ["Did the Ooni turn up in one piece?"],
            },
            {
                "item": "a Le Creuset casserole dish",
                "shop": "John Lewis",
                "state": "two weeks late",
                "q": ["What happened with the Le Creuset delivery?"],
            },
            {
                "item": "a Brompton folding bike",
                "shop": "Evans Cycles",
                "state": "in the wrong colour",
                "q": ["What went wrong with the Brompton?"],
            },
            {
                "item": "a Kindle Paperwhite",
                "shop": "Argos",
                "state": "the next morning",
                "q": ["How quickly did the Kindle come?"],
            },
            {
                "item": "Bose noise-cancelling headphones",
                "shop": "Currys",
                "state": "without a charging cable",
                "q": ["What was missing from the Bose box?"],
            },
        ],
    },
    {
        "key": "team",
        "type": "preference",
        "importance": 4,
        "memory": "{Name} supports {team} and has a season ticket {seat}.",
        "values": [
            {
                "team": "Leyton Orient",
                "seat": "in the East Stand",
                "q": ["Where does {sub} sit at Orient games?"],
            },
            {
                "team": "Hibernian",
                "seat": "behind the goal at Easter Road",
                "q": ["Does {sub} go to Hibernian matches?"],
            },
            {
                "team": "FC St. Pauli",
                "seat": "on the terrace at the Millerntor",
                "q": ["How does {sub} follow St. Pauli?"],
            },
            {
                "team": "Bristol Rovers",
                "seat": "in the Blackthorn End",
                "q": ["Where's {pos} seat for Rovers?"],
            },
            {
                "team": "Bohemians",
                "seat": "at Dalymount Park",
                "q": ["Which ground does {sub} go to for Bohemians?"],
            },
        ],
    },
    {
        "key": "project",
        "type": "fact",
        "importance": 5,
        "memory": (
            "{Name}'s team at work is on {project}, due in {month}, "
            "and {sub} thinks the deadline is unrealistic."
        ),
        "values": [
            {"project": "project Heron", "month": "October", "q": ["When is Heron supposed to ship?"]},
            {
                "project": "the Bluebird migration",
                "month": "March",
                "q": ["How does {sub} feel about Bluebird?"],
            },
            {"project": "Atlas v3", "month": "June", "q": ["What's the deadline for Atlas v3?"]},
            {"project": "project Kestrel", "month": "January", "q": ["Is Kestrel on track?"]},
            {
                "project": "the Juniper rollout",
                "month": "November",
                "q": ["When does the Juniper work have to be done?"],
            },
        ],
    },
    {
        "key": "old_friend",
        "type": "fact",
        "importance": 5,
        "memory": "{Name}'s oldest friend {friend} lives in {town} and they talk on the phone every {day}.",
        "values": [
            {
                "friend": "Siobhan",
                "town": "Limerick",
                "day": "Sunday",
                "q": ["Where is Siobhan living these days?"],
            },
            {
                "friend": "Tariq",
                "town": "Dundee",
                "day": "Wednesday",
                "q": ["How often does {sub} speak to Tariq?"],
            },
            {"friend": "Ingrid", "town": "Tromsø", "day": "Friday", "q": ["Which town is Ingrid in?"]},
            {
                "friend": "Dmitri",
                "town": "Tallinn",
                "day": "Saturday",
                "q": ["When does {sub} catch up with Dmitri?"],
            },
            {"friend": "Oluwaseun", "town": "Ibadan", "day": "Monday", "q": ["Where does Oluwaseun live?"]},
        ],
    },
    {
        "key": "flight",
        "type": "fact",
        "importance": 6,
        "memory": "{Name}'s flight to {city} is {flight} on {date}, leaving at {time}.",
        "values": [
            {
                "city": "Reykjavik",
                "flight": "FI455",
                "date": "12 August",
                "time": "07:40",
                "q": ["What time does FI455 take off?"],
            },
            {
                "city": "Tbilisi",
                "flight": "W6 2731",
                "date": "3 October",
                "time": "22:15",
                "q": ["When does {sub} fly out to Tbilisi?"],
            },
            {
                "city": "Marrakesh",
                "flight": "U2 8853",
                "date": "19 September",
                "time": "06:05",
                "q": ["Which flight is {sub} on for Marrakesh?"],
            },
            {
                "city": "Bergen",
                "flight": "DY1305",
                "date": "27 July",
                "time": "13:50",
                "q": ["What day is the Bergen trip?"],
            },
            {
                "city": "Palermo",
                "flight": "FR3322",
                "date": "5 September",
                "time": "18:25",
                "q": ["At what time is {pos} departure to Palermo?"],
            },
        ],
    },
    {
        "key": "medication",
        "type": "fact",
        "importance": 7,
        "memory": "{Name} takes {dose} of {drug} every {when}, prescribed {why}.",
        "values": [
            {
                "dose": "50 mg",
                "drug": "sertraline",
                "when": "morning",
                "why": "for low mood last spring",
                "q": ["What dose of sertraline is {sub} on?"],
            },
            {
                "dose": "10 mg",
                "drug": "propranolol",
                "when": "day before big presentations",
                "why": "for the shaking",
                "q": ["Why does {sub} take propranolol?"],
            },
            {
                "dose": "10 mg",
                "drug": "cetirizine",
                "when": "day from April to July",
                "why": "for hay fever",
                "q": ["How long does {sub} take cetirizine each year?"],
            },
            {
                "dose": "2 mg",
                "drug": "melatonin",
                "when": "night",
                "why": "after months of bad sleep",
                "q": ["How much melatonin does {sub} use?"],
            },
            {
                "dose": "400 mg",
                "drug": "ibuprofen",
                "when": "evening after football",
                "why": "for {pos} ankle",
                "q": ["When does {sub} reach for ibuprofen?"],
            },
        ],
    },
    {
        "key": "godchild",
        "type": "fact",
        "importance": 5,
        "memory": "{Name}'s goddaughter {child} turns {age} in {month} and has asked for {gift}.",
        "values": [
            {
                "child": "Poppy",
                "age": "seven",
                "month": "May",
                "gift": "a Lego lighthouse",
                "q": ["What present does Poppy want?"],
            },
            {
                "child": "Saoirse",
                "age": "ten",
                "month": "August",
                "gift": "a telescope",
                "q": ["What should {sub} get Saoirse for her birthday?"],
            },
            {
                "child": "Amara",
                "age": "five",
                "month": "February",
                "gift": "a purple scooter",
                "q": ["How old will Amara be?"],
            },
            {
                "child": "Elodie",
                "age": "twelve",
                "month": "December",
                "gift": "a sketchbook and real oil paints",
                "q": ["What's on Elodie's wish list?"],
            },
            {
                "child": "Noa",
                "age": "eight",
                "month": "October",
                "gift": "tickets to see a dinosaur exhibition",
                "q": ["When is Noa's birthday?"],
            },
        ],
    },
]
DETAILS_PER_USER = 9

# Lexical questions on v1's own memories: people ask about a pet or a sibling by name.
CHAIN_LEXICAL = {
    "pet": "What's been going on with {x}?",
    "sibling": "Why did {x} move away?",
}


@dataclass
class Memory:
    id: str
    user_id: str
    type: str
    content: str
    importance: int
    occurred_at: str
    topic: str

    def record(self) -> dict[str, Any]:
        return {
            "id": self.id, "user_id": self.user_id, "type": self.type, "content": self.content,
            "importance": self.importance, "occurred_at": self.occurred_at, "metadata": {"topic": self.topic},
        }  # fmt: skip


@dataclass
class Question:
    user_id: str
    kind: str
    question: str
    answer_ids: list[str]
    distractor_ids: list[str] = field(default_factory=list)
    since: str | None = None
    until: str | None = None


def month_start(offset: int) -> date:
    year = FIRST_MONTH.year + (FIRST_MONTH.month - 1 + offset) // 12
    month = (FIRST_MONTH.month - 1 + offset) % 12 + 1
    return date(year, month, 1)


def timestamp(rng: random.Random, month_offset: int) -> str:
    start = month_start(month_offset)
    days = (month_start(month_offset + 1) - start).days
    moment = datetime(start.year, start.month, start.day, tzinfo=UTC) + timedelta(
        days=rng.randrange(days), hours=rng.randrange(8, 23), minutes=rng.randrange(60)
    )
    return moment.isoformat().replace("+00:00", "Z")


def build(seed: int) -> tuple[list[Memory], list[Question]]:
    rng = random.Random(seed)
    memories: list[Memory] = []
    questions: list[Question] = []
    for person in PEOPLE:
        user_id = f"user-{person.slug}"
        counter = 0

        def add(
            kind: str, text: str, importance: int, month: int, topic: str, *, _p: Person = person
        ) -> Memory:
            nonlocal counter
            counter += 1
            memory = Memory(
                f"{_p.slug}-{counter:03d}",
                f"user-{_p.slug}",
                kind,
                text,
                importance,
                timestamp(rng, month),
                topic,
            )
            memories.append(memory)
            return memory

        by_topic: dict[str, Memory] = {}
        for topic in TOPICS:
            value = rng.choice(topic["values"])
            slots = {k: person.slot(v) for k, v in value.items() if k != "q"}
            text = person.fill(rng.choice(topic["memory"]), **slots)
            memory = add(topic["type"], text, topic["importance"], rng.randrange(MONTHS), topic["key"])
            by_topic[topic["key"]] = memory
            for q in value["q"]:
                questions.append(Question(user_id, "paraphrase", person.fill(q), [memory.id]))

        for near in NEAR_MISS:
            value = rng.choice(near["values"])
            text = person.fill(near["memory"], **value)
            memory = add("fact", text, 5, rng.randrange(MONTHS), near["topic"] + "_other")
            own = by_topic[near["topic"]]
            questions.append(Question(user_id, "distractor", person.fill(near["q"]), [memory.id], [own.id]))

        for chain in CHAINS:
            value = rng.choice(chain["values"])
            slots = {k: person.slot(v) for k, v in value.items()}
            first_month = rng.randrange(MONTHS - 6)
            first = add("fact", person.fill(chain["first"], **slots), 6, first_month, chain["key"])
            second = add(
                "experience", person.fill(chain["second"], **slots), 6,
                rng.randrange(first_month + 1, MONTHS), chain["key"] + "_event",
            )  # fmt: skip
            q = rng.choice(chain["q"])
            questions.append(Question(user_id, "multi_hop", person.fill(q, **slots), [first.id, second.id]))

        # Dated experiences: each user lives through six kinds, two of them twice, in distinct months.
        kinds = rng.sample(EXPERIENCES, 6)
        plan = [*kinds, *rng.sample(kinds, 2)]
        months = sorted(rng.sample(range(MONTHS), len(plan)))
        rng.shuffle(plan)
        used: dict[str, set[str]] = {}
        for experience, month in zip(plan, months, strict=True):
            seen = used.setdefault(experience["kind"], set())
            x = rng.choice([x for x in experience["xs"] if x not in seen])
            seen.add(x)
            memory = add("experience", person.fill(experience["memory"], x=x), 5, month, experience["kind"])
            start = month_start(month)
            when = f"{MONTH_NAMES[start.month - 1]} {start.year}"
            questions.append(
                Question(
                    user_id, "temporal", person.fill(experience["q"], when=when), [memory.id],
                    since=f"{start.isoformat()}T00:00:00Z",
                    until=f"{month_start(month + 1).isoformat()}T00:00:00Z",
                )
            )  # fmt: skip

        for line in rng.sample(SMALL_TALK, 6):
            add("experience", person.fill(line), 1, rng.randrange(MONTHS), "small_talk")

    # Temporal questions about a kind the user did twice are written after both memories exist: fill in the
    # other occurrence as a distractor now that the whole user is known.
    ids_by_topic: dict[tuple[str, str], list[str]] = {}
    for memory in memories:
        ids_by_topic.setdefault((memory.user_id, memory.topic), []).append(memory.id)
    kinds = {e["kind"] for e in EXPERIENCES}
    for question in questions:
        if question.kind == "temporal":
            topic = next(m.topic for m in memories if m.id == question.answer_ids[0])
            assert topic in kinds
            question.distractor_ids = [
                i for i in ids_by_topic[(question.user_id, topic)] if i != question.answer_ids[0]
            ]
    extend_v2(seed, memories, questions)
    return memories, questions


def extend_v2(seed: int, memories: list[Memory], questions: list[Question]) -> None:
    """Append v2's chit-chat, details and lexical questions after v1's content, from their own stream."""
    rng = random.Random(seed * 10 + 2)
    for person in PEOPLE:
        user_id = f"user-{person.slug}"
        own = [m for m in memories if m.user_id == user_id]
        counter = len(own)

        def add(kind: str, text: str, importance: int, topic: str, *, _p: Person = person) -> Memory:
            nonlocal counter
            counter += 1
            memory = Memory(
                f"{_p.slug}-{counter:03d}", f"user-{_p.slug}", kind, text, importance,
                timestamp(rng, rng.randrange(MONTHS)), topic,
            )  # fmt: skip
            memories.append(memory)
            return memory

        for kind, line, importance in rng.sample(CHIT_CHAT, CHIT_CHAT_PER_USER):
            text = person.fill(line, weekday=rng.choice(WEEKDAYS), weather=rng.choice(WEATHER))
            add(kind, text, importance, "chit_chat")

        for detail in rng.sample(DETAILS, DETAILS_PER_USER):
            value = rng.choice(detail["values"])
            slots = {k: person.slot(v) for k, v in value.items() if k != "q"}
            memory = add(
                detail["type"], person.fill(detail["memory"], **slots), detail["importance"], detail["key"]
            )
            for q in value["q"]:
                questions.append(Question(user_id, "lexical", person.fill(q), [memory.id]))

        for key, template in CHAIN_LEXICAL.items():
            (event,) = [m for m in own if m.topic == key + "_event"]
            chain = next(c for c in CHAINS if c["key"] == key)
            x = next(v["x"] for v in chain["values"] if event.content.startswith(v["x"] + " "))
            questions.append(Question(user_id, "lexical", person.fill(template, x=x), [event.id]))


def split_of(question_id: str, seed: int) -> str:
    digest = hashlib.sha256(f"{seed}:{question_id}".encode()).digest()
    return "test" if int.from_bytes(digest[:8], "big") / 2**64 < TEST_SHARE else "tune"


def render(seed: int) -> dict[str, str]:
    memories, questions = build(seed)
    memory_lines = [json.dumps(m.record(), ensure_ascii=False, sort_keys=True) for m in memories]
    question_lines = []
    for index, q in enumerate(questions, start=1):
        qid = f"q-{index:04d}"
        record = {
            "id": qid, "user_id": q.user_id, "kind": q.kind, "question": q.question,
            "answer_ids": q.answer_ids, "distractor_ids": q.distractor_ids,
            "since": q.since, "until": q.until, "split": split_of(qid, seed),
        }  # fmt: skip
        question_lines.append(json.dumps(record, ensure_ascii=False, sort_keys=True))
    manifest = {
        "version": DATASET_VERSION, "seed": seed, "users": len(PEOPLE), "memories": len(memories),
        "questions": len(questions),
        "by_kind": {k: sum(q.kind == k for q in questions) for k in sorted({q.kind for q in questions})},
        "by_split": {s: sum(f'"split": "{s}"' in line for line in question_lines) for s in ("tune", "test")},
    }  # fmt: skip
    return {
        "memories.jsonl": "\n".join(memory_lines) + "\n",
        "questions.jsonl": "\n".join(question_lines) + "\n",
        "manifest.json": json.dumps(manifest, indent=2, sort_keys=True) + "\n",
    }


def cli(
    argv: list[str] | None,
    render_files: Callable[[int], dict[str, str]],
    data_dir: Path,
    seed: int,
    doc: str | None,
) -> int:
    """The generators' command line: write the files, or ``--check`` that the committed ones are current."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=seed)
    parser.add_argument(
        "--check", action="store_true", help=f"compare with the files in {data_dir.name}/ instead of writing"
    )
    args = parser.parse_args(argv)
    files = render_files(args.seed)
    if args.check:
        stale = [
            n
            for n, text in files.items()
            if not (data_dir / n).exists() or (data_dir / n).read_text() != text
        ]
        if stale:
            print(f"out of date: {', '.join(stale)} (run {sys.argv[0]})", file=sys.stderr)
            return 1
        return 0
    data_dir.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (data_dir / name).write_text(text)
    print(files["manifest.json"], end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli(argv, render, DATA_DIR, SEED, __doc__)


if __name__ == "__main__":
    sys.exit(main())
