"""Generate data set v3 of the retrieval bench: conversations as memories (README.md, "Version 3").

Every memory is one turn of a conversation between the companion (Juno) and a user, kept as said, with the
speaker's name in front. Chit-chat turns, Juno's replies, facts buried in longer turns and rare identifiers
(names, codes, flight numbers, amounts) are what a real store of turns holds. The design (counts and shares)
was written down in README.md before this generator and before any v3 run.

Deterministic: the same seed writes byte-identical files (no clock, no network).

    .venv/bin/python bench/retrieval/generate_v3.py            # writes bench/retrieval/data/v3/*
    .venv/bin/python bench/retrieval/generate_v3.py --check    # fails if the committed files differ
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.retrieval.generate import MONTH_NAMES, MONTHS, PEOPLE, WEEKDAYS, Person, cli, month_start  # noqa: E402

DATA_DIR = Path(__file__).resolve().parent / "data" / "v3"
DATASET_VERSION = "3"
SEED = 20261125
TEST_SHARE = 0.3
COMPANION = "Juno"
TYPE = "experience"  # a store of raw turns has no extraction step: one type for every turn
IMPORTANCE = 4  # MemoryPolicy's default importance for an experience

# The design's fixed counts (README.md, "Version 3").
SESSIONS = 14
FACTS = 16
LEXICAL = 10
EVENTS = 6
CHIT_CHAT_EXCHANGES = 2  # per session, between the content turns
BURIED_SHARE = 0.5  # content turns with a chit-chat clause before or an unrelated clause after the fact
ECHO_SHARE = 1 / 3  # Juno's replies to content turns that repeat the identifier

WEATHER = [
    "raining again", "freezing", "weirdly warm", "so windy", "grey and drizzly", "sunny for once",
    "foggy", "humid and gross",
]  # fmt: skip

# --- chit-chat --------------------------------------------------------------------------------------------
# Session openings and closings, the user's mood line, and small exchanges: no lasting fact, in the everyday
# words (food, work, sleep, family, weather, tired, plans) that questions use too.

USER_OPEN = [
    "hey Juno", "hi!", "hey, you around?", "morning", "evening :)", "heyyy", "hello again", "yo",
    "hi Juno, got a minute?", "ok I'm back",
]  # fmt: skip
JUNO_OPEN = [
    "Hey {Name}! How's your {weekday} going?",
    "Hi {Name}, good to see you. How are things?",
    "Hello! I was hoping you'd drop by. What's new?",
    "Hey you. How was your day?",
    "Hi {Name}! What's on your mind tonight?",
    "Welcome back! How are you feeling today?",
]
USER_MOOD = [
    "ugh, {weekday} again. it's {weather} and I've had zero sleep",
    "long day. work was chaos and I skipped lunch",
    "pretty good actually, it's {weather} but I don't care",
    "tired. my family called three times today about nothing",
    "meh. {weekday}s are the worst, I just want food and my bed",
    "honestly fine, just a slow {weekday} at work",
    "not bad! had a proper breakfast for once",
    "stressed, too many plans this week and it's {weather}",
    "a bit low today, not sure why. maybe the weather",
    "good! went for a walk before it got {weather}",
    "knackered, the bus was late twice and it's {weather}",
    "alright. ate way too much pasta at lunch lol",
]
USER_CHAT = [
    "lol yeah", "haha exactly", "I know right", "anyway", "ok that's fair", "hmm maybe",
    "what should I have for dinner tonight?", "I can't be bothered to cook tonight",
    "do you ever get tired? lol", "I need a holiday so badly", "my back hurts from sitting all day",
    "I should drink more water", "work is fine I guess, same as always", "I stayed up way too late again",
    "the neighbours are being loud again", "I keep forgetting to call my mum back",
    "I watched a terrible film last night", "it's been such a long week", "I'm trying to sleep earlier",
    "thinking of ordering takeaway", "my phone is on 3% as usual",
    "ok random question, are you a morning person?",
    "I made soup, it was mid", "can't wait for the weekend", "the weather is doing my head in",
    "I'm so bored at work today", "I think I need new headphones", "had the weirdest dream last night",
]  # fmt: skip
JUNO_CHAT = [
    "Ha, I get that.", "That makes sense.", "Fair enough!", "Oh no, that sounds rough.",
    "I'm here if you want to talk about it.", "Honestly, that sounds like a good plan.",
    "Tell me more?", "Haha, classic.", "How are you feeling about it?", "That's completely understandable.",
    "Sounds like you deserve a rest.", "Maybe something simple and warm for dinner?",
    "A quiet evening might be exactly what you need.", "You've had a lot on your plate lately.",
    "I hope tomorrow is kinder to you.", "Ooh, I love that.",
]  # fmt: skip
USER_CLOSE = [
    "ok I'm off, night!", "gotta go, talk tomorrow", "thanks Juno, bye", "bedtime for me",
    "right, dinner time. bye!",
    "ttyl", "ok that helped, thanks", "night night",
]  # fmt: skip
JUNO_CLOSE = [
    "Good night, {Name}! Sleep well.", "Talk soon! Take care of yourself.", "Bye for now!",
    "Anytime. Have a lovely evening.", "Sweet dreams!", "See you tomorrow, {Name}.",
]  # fmt: skip
# Buried facts: a chit-chat clause before the fact, or an unrelated clause after it.
PREFIX = [
    "ugh, {weekday} again. anyway", "sorry, work was mental. so", "ok random but", "oh before I forget,",
    "it's {weather} here lol. anyway", "just got home and I'm starving. so", "long day. oh and",
    "lol I've had three coffees. anyway",
]  # fmt: skip
SUFFIX = [
    "oh and I burnt the toast again", "also it's {weather}, great", "anyway I need to eat something",
    "also my mum says hi lol", "and the bus was late again", "also I'm so tired",
    "anyway how's your {weekday}", "btw I finally did the laundry",
]  # fmt: skip

# --- facts ------------------------------------------------------------------------------------------------
# Twenty topics shared by all users. A value has an identifier ``id`` (rare: a name, code, number, amount)
# and other slots; ``turn`` is what the user says, ``para`` the companion's own question without the
# identifier, ``lex`` a question that names it, ``replies`` Juno's answers (with {id}: an echo).

TOPICS: list[dict[str, Any]] = [
    {
        "key": "vet",
        "values": [
            {"id": "Shelby", "animal": "tortoise", "thing": "worming paste", "n": "6 weeks"},
            {"id": "Pickle", "animal": "rabbit", "thing": "Frontline drops", "n": "4 weeks"},
            {"id": "Kiwi", "animal": "budgie", "thing": "mite spray", "n": "month"},
            {"id": "Noodle", "animal": "ferret", "thing": "flea spot-on", "n": "5 weeks"},
            {"id": "Bramble", "animal": "guinea pig", "thing": "vitamin C drops", "n": "week"},
        ],
        "turn": [
            "the vet said {id} needs the {thing} every {n}, the {animal} is not impressed",
            "took {id} to the vet, apparently it's {thing} every {n} from now on",
        ],
        "para": ["How often does {pos} {animal} need treatment from the vet?"],
        "lex": ["What did the vet say {id} needs?"],
        "replies": ["Poor {id}! Hope the {animal} forgives you.", "Vets always find something, don't they?"],
    },
    {
        "key": "medication",
        "values": [
            {"id": "Quorvix", "dose": "50 mg", "cond": "migraines", "para_cond": "headaches"},
            {"id": "Delmitra", "dose": "20 mg", "cond": "acid reflux", "para_cond": "heartburn"},
            {"id": "Zolventin", "dose": "10 mg", "cond": "anxiety", "para_cond": "nerves"},
            {"id": "Ferocalm", "dose": "200 mg", "cond": "iron levels", "para_cond": "anaemia"},
            {"id": "Brovanex", "dose": "5 mg", "cond": "blood pressure", "para_cond": "hypertension"},
        ],
        "turn": [
            "the doctor put me on {id} {dose} for the {cond}, one tablet at night",
            "started {id} {dose} this week for my {cond}. feel a bit weird",
        ],
        "para": ["Which medicine is {sub} taking for {pos} {para_cond}?"],
        "lex": ["What's the {id} for?"],
        "replies": [
            "I hope the {id} helps.",
            "New meds can take a while to settle. Be gentle with yourself.",
        ],
    },
    {
        "key": "doctor",
        "values": [
            {"id": "Okonkwo-Hale", "want": "blood tests"},
            {"id": "Vashti", "want": "a scan of my knee"},
            {"id": "Lindqvist", "want": "a food diary for two weeks"},
            {"id": "Abernethy", "want": "an ECG"},
            {"id": "Ferreira-Lowe", "want": "a sleep study"},
        ],
        "turn": [
            "finally saw Dr {id}, she wants {want} before the next appointment",
            "my new GP is Dr {id}. she's lovely but wants {want} first",
        ],
        "para": ["What did {pos} GP ask for before the next appointment?"],
        "lex": ["What does Dr {id} want done?"],
        "replies": ["Dr {id} sounds thorough.", "Good that someone is finally looking into it."],
    },
    {
        "key": "gym",
        "values": [
            {"id": "Ironhaven", "time": "6:30", "class": "spin"},
            {"id": "Pulsebox", "time": "7am", "class": "boxing"},
            {"id": "Gravitas", "time": "lunchtime", "class": "kettlebell"},
            {"id": "Corefield", "time": "8pm", "class": "rowing"},
        ],
        "turn": [
            "joined {id} round the corner, doing the {time} {class} class twice a week",
            "signed up at {id}! {class} at {time}, wish me luck",
        ],
        "para": ["Where does {sub} go to work out?"],
        "lex": ["Which class does {sub} do at {id}?"],
        "replies": ["Go you! {class} is no joke.", "That's a great routine to start.", "Ooh, {id}! Fancy."],
    },
    {
        "key": "car",
        "values": [
            {"id": "KX19 RFT", "car": "a blue Skoda", "problem": "the clutch"},
            {"id": "LR67 WNB", "car": "my old Corsa", "problem": "a flat battery"},
            {"id": "YS21 HPO", "car": "the silver Yaris", "problem": "the brakes squeaking"},
            {"id": "MT15 GZE", "car": "my dad's old Volvo", "problem": "an oil leak"},
        ],
        "turn": [
            "{car} ({id}) is in the garage again, {problem} this time",
            "garage rang about {car}, reg {id}: it's {problem}",
        ],
        "para": ["What's wrong with {pos} car at the moment?"],
        "lex": ["What's the problem with {id}?"],
        "replies": [
            "Cars are money pits, honestly.",
            "Ugh, {problem}. Hope it's cheap to fix.",
            "Poor {id}, again!",
        ],
    },
    {
        "key": "flight",
        "values": [
            {"id": "LX1183", "to": "Zurich", "time": "6:40am"},
            {"id": "FR8806", "to": "Porto", "time": "7:15am"},
            {"id": "KL1022", "to": "Amsterdam", "time": "9:05am"},
            {"id": "TP1337", "to": "Lisbon", "time": "5:50am"},
            {"id": "SK1530", "to": "Oslo", "time": "11:20am"},
        ],
        "turn": [
            "booked it! {id} to {to}, leaves at {time}, which is evil",
            "flight's {id}, {time} departure to {to}. I'll be a zombie",
        ],
        "para": ["What time does {pos} plane take off?"],
        "lex": ["When does {id} leave?"],
        "replies": [
            "{time}? Brave. Pack the night before!",
            "Exciting! Have you been to {to} before?",
            "{id}, noted. Safe travels!",
        ],
    },
    {
        "key": "door_code",
        "values": [
            {"id": "4471", "place": "the new flat"},
            {"id": "9082", "place": "my building"},
            {"id": "3315", "place": "the bike shed"},
            {"id": "6620", "place": "the back gate"},
        ],
        "turn": [
            "note to self: the code for {place} is {id} then hash",
            "they changed the code on {place}, it's {id}# now, I'll forget it",
        ],
        "para": ["What's the number {sub} has to punch in to get into {pos} place?"],
        "lex": ["What opens with {id}?"],
        "replies": ["I'll remember it for you.", "Got it, {id}. Safe with me."],
    },
    {
        "key": "booking",
        "values": [
            {"id": "K7QX2M", "what": "the hotel in Bath"},
            {"id": "ZP4R8T", "what": "the cottage in Wales"},
            {"id": "H3WV9C", "what": "the ferry to Santander"},
            {"id": "QJ2L6D", "what": "the campsite in Cornwall"},
        ],
        "turn": [
            "booking ref for {what} is {id}, can you hang on to that",
            "got the confirmation for {what}: {id}",
        ],
        "para": ["What's the reservation reference for {pos} trip?"],
        "lex": ["Which booking is {id}?"],
        "replies": ["Noted! {id}.", "Lovely, that sounds like a proper break."],
    },
    {
        "key": "bill",
        "values": [
            {"id": "£1,240", "what": "rent", "change": "going up in April"},
            {"id": "£386", "what": "the energy bill", "change": "for one quarter"},
            {"id": "£95", "what": "the phone bill", "change": "because of roaming"},
            {"id": "£2,100", "what": "the deposit", "change": "due by Friday"},
        ],
        "turn": [
            "{what} is {id} now, {change}. great",
            "just saw {what}: {id}, {change}. I want to cry",
        ],
        "para": ["How much money did {sub} say {sub} has to pay?"],
        "lex": ["What is the {id} for?"],
        "replies": ["That's a lot. Are you okay for money?", "Oof, {id}. That hurts."],
    },
    {
        "key": "band",
        "values": [
            {"id": "Velvet Orchard", "when": "every morning"},
            {"id": "Nimbus Choir", "when": "on repeat"},
            {"id": "The Hollow Pines", "when": "all week"},
            {"id": "Saltmarsh", "when": "on the commute"},
        ],
        "turn": [
            "I'm obsessed with {id} right now, listening {when}",
            "have you heard {id}? I've had them {when}",
        ],
        "para": ["Which group has {sub} been listening to a lot?"],
        "lex": ["What does {sub} think of {id}?"],
        "replies": ["I'll have to look {id} up!", "Nothing like finding new music you love."],
    },
    {
        "key": "book",
        "values": [
            {"id": "The Glass Cartographer", "verdict": "couldn't put it down"},
            {"id": "Ninefold", "verdict": "the ending made me cry"},
            {"id": "A Winter in Kessel", "verdict": "slow but beautiful"},
            {"id": "The Salt Archive", "verdict": "honestly overrated"},
        ],
        "turn": [
            "finished {id} last night, {verdict}",
            "book club picked {id}. {verdict}",
        ],
        "para": ["What novel has {sub} just read, and did {sub} like it?"],
        "lex": ["How did {sub} find {id}?"],
        "replies": [
            "I love that you're reading so much.",
            "Ooh, what was it about?",
            "{id} is on my list now.",
        ],
    },
    {
        "key": "colleague",
        "values": [
            {"id": "Thibault", "habit": "takes credit for my work"},
            {"id": "Ingeborg", "habit": "cc's my manager on everything"},
            {"id": "Radomir", "habit": "eats my yoghurts from the fridge"},
            {"id": "Philippa", "habit": "books meetings at 5pm on Fridays"},
        ],
        "turn": [
            "{id} at work {habit} and I'm losing it",
            "ok so {id} {habit}. again.",
        ],
        "para": ["Which coworker has been annoying {obj}?"],
        "lex": ["What did {id} do at work?"],
        "replies": ["That would drive me up the wall.", "Have you said anything to {id}?"],
    },
    {
        "key": "cafe",
        "values": [
            {"id": "Crumb & Kettle", "order": "the cardamom bun"},
            {"id": "Blue Heron", "order": "a flat white and the cheese scone"},
            {"id": "Oddfellows", "order": "the shakshuka"},
            {"id": "Little Ostrava", "order": "the poppy seed cake"},
        ],
        "turn": [
            "found my new favourite café, {id}, I always get {order}",
            "{id} is my spot now. {order} every single time",
        ],
        "para": ["Where does {sub} like to go for coffee?"],
        "lex": ["What does {sub} order at {id}?"],
        "replies": [
            "That sounds like a perfect treat.",
            "A favourite café is important!",
            "{id} sounds dreamy.",
        ],
    },
    {
        "key": "restaurant",
        "values": [
            {"id": "Mezzaluna", "occasion": "our anniversary"},
            {"id": "Sato Izakaya", "occasion": "my birthday"},
            {"id": "The Larder", "occasion": "Mum's sixtieth"},
            {"id": "Casa Burrito Loco", "occasion": "the team dinner"},
        ],
        "turn": [
            "booked {id} for {occasion}, fingers crossed it's good",
            "we're doing {id} for {occasion}!",
        ],
        "para": ["Where is {sub} going to eat for the celebration?"],
        "lex": ["What's the dinner at {id} for?"],
        "replies": ["That sounds lovely!", "Ooh, {id}. Tell me how the food is."],
    },
    {
        "key": "project",
        "values": [
            {"id": "Bluefinch", "deadline": "end of March"},
            {"id": "Tarragon", "deadline": "the 14th"},
            {"id": "Project Owlet", "deadline": "before summer"},
            {"id": "Kestrel-9", "deadline": "next sprint"},
        ],
        "turn": [
            "I'm leading {id} now, deadline is {deadline}, no pressure lol",
            "they moved me onto {id}. has to ship by {deadline}",
        ],
        "para": ["What's the thing {sub}'s leading at work, and when is it due?"],
        "lex": ["When is {id} due?"],
        "replies": ["You'll smash it.", "Leading it? That's a big deal!", "Good luck with {id}!"],
    },
    {
        "key": "order",
        "values": [
            {"id": "#A-58213", "item": "standing desk", "problem": "arrived with a broken leg"},
            {"id": "#771-0342", "item": "trainers", "problem": "are the wrong size"},
            {"id": "#QZ-9910", "item": "coffee grinder", "problem": "never showed up"},
            {"id": "#B-20457", "item": "winter coat", "problem": "is the wrong colour"},
        ],
        "turn": [
            "order {id}, the {item}, {problem}. customer service is useless",
            "the {item} I ordered ({id}) {problem}",
        ],
        "para": ["What went wrong with the thing {sub} bought online?"],
        "lex": ["What happened with order {id}?"],
        "replies": [
            "That's so annoying. Did they offer a refund?",
            "Ugh, online shopping.",
            "Keep {id} handy for the complaint.",
        ],
    },
    {
        "key": "hobby",
        "values": [
            {"id": "bouldering", "where": "at the wall on Saturdays"},
            {"id": "bookbinding", "where": "at an evening class"},
            {"id": "kintsugi", "where": "at home with a kit"},
            {"id": "orienteering", "where": "with a club on Sundays"},
        ],
        "turn": [
            "I've taken up {id}, {where}, I'm terrible but I love it",
            "new hobby alert: {id}! {where}",
        ],
        "para": ["What has {sub} started doing in {pos} free time?"],
        "lex": ["How is the {id} going?"],
        "replies": ["I love that for you!", "A new hobby is such a good idea.", "{id}! That's so cool."],
    },
    {
        "key": "nickname",
        "values": [
            {"id": "Pip", "who": "my grandad"},
            {"id": "Bean", "who": "my dad"},
            {"id": "Squidge", "who": "my older brother"},
            {"id": "Mop", "who": "my aunt"},
        ],
        "turn": [
            "{who} still calls me {id}, it's so embarrassing",
            "only {who} is allowed to call me {id} lol",
        ],
        "para": ["What pet name does {pos} family use for {obj}?"],
        "lex": ["Who calls {obj} {id}?"],
        "replies": ["That's adorable!", "Family nicknames are the best.", "Can I call you {id} too?"],
    },
    {
        "key": "dislike",
        "values": [
            {"id": "coriander", "why": "it tastes like soap"},
            {"id": "olives", "why": "they're just wrong"},
            {"id": "marzipan", "why": "it's vile"},
            {"id": "blue cheese", "why": "it smells like feet"},
        ],
        "turn": [
            "never put {id} near me, {why}",
            "controversial but {id}? {why}",
        ],
        "para": ["Which food can't {sub} stand?"],
        "lex": ["Does {sub} like {id}?"],
        "replies": ["Noted, no {id}!", "Ha, that's a strong opinion."],
    },
    {
        "key": "hometown",
        "values": [
            {"id": "Brackenfold", "detail": "tiny village, one pub"},
            {"id": "Ashby Wendle", "detail": "near the coast"},
            {"id": "Kirkmoor", "detail": "up north, always raining"},
            {"id": "Stanwick Cross", "detail": "basically a roundabout"},
        ],
        "turn": [
            "I grew up in {id}, {detail}",
            "back in {id} where I'm from, {detail}, nothing ever happens",
        ],
        "para": ["Where did {sub} grow up?"],
        "lex": ["What's {id} like?"],
        "replies": ["That sounds cosy.", "Do you miss it?", "I'd love to see {id} one day."],
    },
]

# Someone else's fact on a topic the user has too: the user's own fact on it is the distractor.
OTHERS: list[dict[str, Any]] = [
    {
        "topic": "dislike",
        "values": [{"x": "Marguerite", "food": "mushrooms"}, {"x": "Osei", "food": "mayonnaise"}],
        "turn": "my friend {x} won't touch {food}, we had to change the whole menu",
        "q": "Which food does {pos} friend refuse to eat?",
    },
    {
        "topic": "hometown",
        "values": [{"x": "Valparaíso"}, {"x": "Tromsø"}, {"x": "Galway"}],
        "turn": "my partner is from {x} originally, so different from here",
        "q": "Where does {pos} partner come from?",
    },
    {
        "topic": "hobby",
        "values": [{"x": "falconry"}, {"x": "beekeeping"}, {"x": "fencing"}],
        "turn": "my coworker does {x} at weekends, who even does that",
        "q": "What does {pos} coworker do in their spare time?",
    },
    {
        "topic": "car",
        "values": [{"x": "a vintage Mini"}, {"x": "an electric Kia"}, {"x": "a camper van"}],
        "turn": "my brother just bought {x}, he won't shut up about it",
        "q": "What did {pos} brother buy to drive?",
    },
]

# Chains: the first turn names someone, a later session's turn says something about the name only.
CHAINS: list[dict[str, Any]] = [
    {
        "key": "pet",
        "values": [{"x": "Marmalade"}, {"x": "Pudding"}, {"x": "Ziggy"}, {"x": "Tofu"}, {"x": "Mochi"}],
        "first": "we adopted a cat!! she's called {x}, ginger and very loud",
        "second": "{x} knocked my laptop off the table and then sat on the keyboard",
        "q": "What has {pos} cat been up to?",
    },
    {
        "key": "sibling",
        "values": [{"x": "Anya"}, {"x": "Ilse"}, {"x": "Wren"}, {"x": "Dagny"}, {"x": "Maren"}],
        "first": "my sister {x} is staying with us for a bit, she's between flats",
        "second": "{x} got the job in Tallinn!! she moves next month",
        "q": "What's the latest news about {pos} sister?",
    },
    {
        "key": "partner",
        "values": [{"x": "Rafferty"}, {"x": "Emeka"}, {"x": "Solveig"}, {"x": "Caspian"}, {"x": "Noor"}],
        "first": "{x} and I have been together three years today, my partner is the best",
        "second": "{x} sprained an ankle at five-a-side, so I'm nurse for the week",
        "q": "How is {pos} partner doing?",
    },
    {
        "key": "friend",
        "values": [{"x": "Lorcan"}, {"x": "Tamsin"}, {"x": "Benedek"}, {"x": "Yusra"}, {"x": "Odile"}],
        "first": "my best friend {x} has known me since we were six",
        "second": "{x} is getting married in September and asked me to give a speech",
        "q": "What's going on with {pos} best friend?",
    },
]
CHAIN_REPLIES = [
    "Aww, tell me more!",
    "That's big news!",
    "How do you feel about that?",
    "Oh, {id}! Give them my love.",
]
OTHER_REPLIES = ["Ha, fair enough.", "That's funny.", "Oh, {id}? Interesting!"]

# Dated events: four kinds drawn from eight, two of them twice, one event a session.
EVENTS_BY_KIND: list[dict[str, Any]] = [
    {
        "kind": "trip",
        "xs": ["Kraków", "Lyon", "Edinburgh", "Seville", "Bruges"],
        "turn": "just got back from {x}, the food was unreal and my feet are destroyed",
        "q": "Where did {sub} travel in {when}?",
    },
    {
        "kind": "concert",
        "xs": ["Fontaines D.C.", "Björk", "Khruangbin", "Arlo Parks", "Sigur Rós"],
        "turn": "saw {x} live last night, still buzzing",
        "q": "Which act did {sub} see perform in {when}?",
    },
    {
        "kind": "wedding",
        "xs": ["my cousin Greta", "my old flatmate Jules", "my uncle Bram", "my colleague Sunniva"],
        "turn": "{x} got married on Saturday, I cried through the whole vows",
        "q": "Whose wedding did {sub} go to in {when}?",
    },
    {
        "kind": "hospital",
        "xs": ["a sprained wrist", "a kidney stone", "stitches in my thumb", "a bad chest infection"],
        "turn": "spent the night in A&E with {x}, never again",
        "q": "Why was {sub} in hospital in {when}?",
    },
    {
        "kind": "move",
        "xs": ["Clapham", "Leith", "Headingley", "Jesmond"],
        "turn": "we moved! new place is in {x}, boxes everywhere",
        "q": "Which area did {sub} move to in {when}?",
    },
    {
        "kind": "exam",
        "xs": ["my driving test", "the accountancy exam", "my Spanish B2", "the first aid course"],
        "turn": "passed {x}!!! can't believe it",
        "q": "What did {sub} pass in {when}?",
    },
    {
        "kind": "match",
        "xs": ["the derby", "the cup final", "the away game at Hull", "the rugby at Twickenham"],
        "turn": "went to {x} with my dad, we lost but what a day",
        "q": "Which game did {sub} watch in person in {when}?",
    },
    {
        "kind": "festival",
        "xs": ["Green Man", "Primavera", "Latitude", "Roskilde"],
        "turn": "back from {x}, I need to sleep for a week",
        "q": "Which festival did {sub} go to in {when}?",
    },
]
EVENT_REPLIES = ["Oh wow! How are you feeling?", "Tell me everything!", "What a week you've had."]


@dataclass
class Memory:
    id: str
    user_id: str
    content: str
    occurred_at: str
    topic: str
    speaker: str
    session: str
    turn: int

    def record(self) -> dict[str, Any]:
        return {
            "id": self.id, "user_id": self.user_id, "type": TYPE, "content": self.content,
            "importance": IMPORTANCE, "occurred_at": self.occurred_at,
            "metadata": {
                "topic": self.topic, "speaker": self.speaker, "session": self.session, "turn": self.turn,
            },
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


@dataclass
class Turn:
    """A content turn before it is placed: what the user says, Juno's reply, and what asks about it."""

    topic: str
    text: str
    reply: str
    echo: bool
    key: str  # links questions to the stored ids once the turn is placed


def fill(template: str, person: Person, **slots: str) -> str:
    return template.format(Name=person.name, sub=person.sub, obj=person.obj, pos=person.pos, **slots)


def ask(template: str, person: Person, **slots: str) -> str:
    text = fill(template, person, **slots)
    return text[0].upper() + text[1:]


def content(
    rng: random.Random,
    person: Person,
    serial: Iterator[int],
    topic: str,
    said: str,
    replies: list[str],
    slots: dict[str, str],
) -> Turn:
    """A user turn (buried in chit-chat or not) and Juno's reply (an echo of the identifier or not)."""
    text = said
    if rng.random() < BURIED_SHARE:
        before = rng.random() < 0.5
        clause = fill(
            rng.choice(PREFIX if before else SUFFIX), person, weekday=rng.choice(WEEKDAYS),
            weather=rng.choice(WEATHER),
        )  # fmt: skip
        text = f"{clause} {said}" if before else f"{said}. {clause}"
    echoes = [r for r in replies if "{id}" in r]
    plain = [r for r in replies if "{id}" not in r]
    echo = bool(echoes) and rng.random() < ECHO_SHARE
    ident = slots.get("id", slots.get("x", ""))
    reply = fill(rng.choice(echoes if echo else plain), person, **{**slots, "id": ident})
    return Turn(topic, text, reply, echo, f"{topic}:{next(serial)}")


def build(seed: int) -> tuple[list[Memory], list[Question]]:
    rng = random.Random(seed)
    memories: list[Memory] = []
    questions: list[Question] = []
    for person in PEOPLE:
        user_id = f"user-{person.slug}"
        months = sorted(rng.sample(range(MONTHS), SESSIONS))
        # Questions keyed by the content turns they ask about (resolved to ids when the turns are placed).
        pending: list[tuple[str, str, list[str], list[str], int | None]] = []
        placed: dict[int, list[Turn]] = {s: [] for s in range(SESSIONS)}
        serial = itertools.count()

        def turn_of(topic: str, said: str, replies: list[str], slots: dict[str, str]) -> Turn:
            return content(rng, person, serial, topic, fill(said, person, **slots), replies, slots)  # noqa: B023

        def echo(*turns: Turn) -> list[str]:
            """Juno's replies that repeat the identifier: not answers, listed as distractors."""
            return [t.key + ":reply" for t in turns if t.echo]

        # Facts: the four topics of the someone-else turns are always among the user's sixteen.
        forced = [o["topic"] for o in OTHERS]
        rest = [t for t in TOPICS if t["key"] not in forced]
        chosen = [t for t in TOPICS if t["key"] in forced] + rng.sample(rest, FACTS - len(forced))
        lexical_keys = {t["key"] for t in rng.sample(chosen, LEXICAL)}
        own_fact: dict[str, Turn] = {}
        for topic in chosen:
            value = rng.choice(topic["values"])
            turn = turn_of(topic["key"], rng.choice(topic["turn"]), topic["replies"], value)
            own_fact[topic["key"]] = turn
            placed[rng.randrange(SESSIONS)].append(turn)
            para = ask(rng.choice(topic["para"]), person, **value)
            pending.append(("paraphrase", para, [turn.key], echo(turn), None))
            if topic["key"] in lexical_keys:
                lex = ask(rng.choice(topic["lex"]), person, **value)
                pending.append(("lexical", lex, [turn.key], echo(turn), None))

        for other in OTHERS:
            value = rng.choice(other["values"])
            turn = turn_of("other_" + other["topic"], other["turn"], OTHER_REPLIES, value)
            placed[rng.randrange(SESSIONS)].append(turn)
            own = own_fact[other["topic"]]
            pending.append(("distractor", ask(other["q"], person), [turn.key], [own.key, *echo(turn)], None))

        for chain in CHAINS:
            value = rng.choice(chain["values"])
            first_session = rng.randrange(SESSIONS - 1)
            first = turn_of(chain["key"], chain["first"], CHAIN_REPLIES, value)
            second = turn_of(chain["key"] + "_event", chain["second"], CHAIN_REPLIES, value)
            placed[first_session].append(first)
            placed[rng.randrange(first_session + 1, SESSIONS)].append(second)
            pending.append(
                ("multi_hop", ask(chain["q"], person), [first.key, second.key], echo(first, second), None)
            )

        kinds = rng.sample(EVENTS_BY_KIND, 4)
        plan = [*kinds, *rng.sample(kinds, 2)]
        rng.shuffle(plan)
        event_sessions = rng.sample(range(SESSIONS), EVENTS)
        used: dict[str, set[str]] = {}
        event_keys: dict[str, list[str]] = {}
        for event, session in zip(plan, event_sessions, strict=True):
            seen = used.setdefault(event["kind"], set())
            x = rng.choice([x for x in event["xs"] if x not in seen])
            seen.add(x)
            turn = turn_of("event_" + event["kind"], event["turn"], EVENT_REPLIES, {"x": x})
            placed[session].append(turn)
            event_keys.setdefault(event["kind"], []).append(turn.key)
            start = month_start(months[session])
            when = f"{MONTH_NAMES[start.month - 1]} {start.year}"
            pending.append(("temporal", ask(event["q"], person, when=when), [turn.key], [], session))

        # Lay out the sessions: opening, content turns and chit-chat exchanges interleaved, closing.
        ids: dict[str, str] = {}
        counter = 0
        for session in range(SESSIONS):
            start = month_start(months[session])
            days = (month_start(months[session] + 1) - start).days
            at = datetime(start.year, start.month, start.day, tzinfo=UTC) + timedelta(
                days=rng.randrange(days), hours=rng.randrange(8, 22), minutes=rng.randrange(60)
            )
            day = WEEKDAYS[at.weekday()]
            name = f"s{session + 1:02d}"
            lines: list[tuple[str, str, str | None]] = [
                ("user", rng.choice(USER_OPEN), None),
                ("companion", fill(rng.choice(JUNO_OPEN), person, weekday=day), None),
                ("user", fill(rng.choice(USER_MOOD), person, weekday=day, weather=rng.choice(WEATHER)), None),
            ]
            blocks: list[list[tuple[str, str, str | None]]] = [
                [("user", t.text, t.key), ("companion", t.reply, t.key + ":reply")] for t in placed[session]
            ]
            chats = rng.sample(USER_CHAT, CHIT_CHAT_EXCHANGES)
            blocks += [[("user", c, None), ("companion", rng.choice(JUNO_CHAT), None)] for c in chats]
            rng.shuffle(blocks)
            for block in blocks:
                lines += block
            lines += [
                ("user", rng.choice(USER_CLOSE), None),
                ("companion", fill(rng.choice(JUNO_CLOSE), person), None),
            ]
            topic_of = {t.key: t.topic for t in placed[session]}
            for index, (speaker, text, key) in enumerate(lines):
                counter += 1
                memory_id = f"{person.slug}-{counter:03d}"
                if key is not None:
                    ids[key] = memory_id
                base = key.removesuffix(":reply") if key else None
                topic = "chit_chat" if base is None else topic_of[base] + (":reply" if key != base else "")
                who = person.name if speaker == "user" else COMPANION
                memories.append(
                    Memory(
                        memory_id, user_id, f"{who}: {text}",
                        (at + timedelta(minutes=index)).isoformat().replace("+00:00", "Z"),
                        topic, speaker, name, index + 1,
                    )
                )  # fmt: skip

        for kind, text, answers, distractors, session in pending:
            question = Question(user_id, kind, text, [ids[a] for a in answers], [ids[d] for d in distractors])
            if session is not None:
                start = month_start(months[session])
                question.since = f"{start.isoformat()}T00:00:00Z"
                question.until = f"{month_start(months[session] + 1).isoformat()}T00:00:00Z"
                kind_of = next(k for k, keys in event_keys.items() if answers[0] in keys)
                question.distractor_ids = [ids[k] for k in event_keys[kind_of] if k != answers[0]]
            questions.append(question)
    return memories, questions


def split_of(question_id: str, seed: int) -> str:
    digest = hashlib.sha256(f"{seed}:{question_id}".encode()).digest()
    return "test" if int.from_bytes(digest[:8], "big") / 2**64 < TEST_SHARE else "tune"


def render(seed: int) -> dict[str, str]:
    memories, questions = build(seed)
    memory_lines = [json.dumps(m.record(), ensure_ascii=False, sort_keys=True) for m in memories]
    question_lines = []
    order = {"paraphrase": 0, "lexical": 1, "temporal": 2, "multi_hop": 3, "distractor": 4}
    users = [f"user-{p.slug}" for p in PEOPLE]
    ordered = sorted(questions, key=lambda q: (users.index(q.user_id), order[q.kind]))
    for index, q in enumerate(ordered, start=1):
        qid = f"q3-{index:04d}"
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
        "by_speaker": {s: sum(m.speaker == s for m in memories) for s in ("companion", "user")},
        "chit_chat": sum(m.topic == "chit_chat" for m in memories),
    }  # fmt: skip
    return {
        "memories.jsonl": "\n".join(memory_lines) + "\n",
        "questions.jsonl": "\n".join(question_lines) + "\n",
        "manifest.json": json.dumps(manifest, indent=2, sort_keys=True) + "\n",
    }


def main(argv: list[str] | None = None) -> int:
    return cli(argv, render, DATA_DIR, SEED, __doc__)


if __name__ == "__main__":
    sys.exit(main())
