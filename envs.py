"""Three toy text environments that mirror the paper's benchmarks: ToyShop (WebShop), ToyLab (ScienceWorld)
and ToySQL (InterCode-SQL). They keep the episode structure and the reward *shape* of the real ones (partial
rewards, near-misses close to 1) and are small enough for a ~1M-parameter model on a CPU. Interface:
docs/design.md; reward bands, measured sizes and what each env mirrors: docs/envs.md.

    task = make_tasks("shop", "train", n=1, seed=0)[0]
    env = make_env("shop"); obs = env.reset(task); obs, reward, done, info = env.step("search[wool shirt]")

Every env: the reward is 0 until the last step, then the score in [0, 1]; info has valid, success, end
(success | wrong | timeout) and scores. Bad input is part of the game: an empty, overlong (> 200 chars),
non-ASCII or unparseable action, or one that cannot apply here, costs a step and answers "nothing happens."
(valid=False); info["why"] then says why, for a person playing: the agent never sees it. Nothing raises.
Tasks are JSON-able dicts; everything is deterministic from the seed (random.Random instances and hashlib,
never the global RNG or the per-process salted hash()).

Layout: the shared episode machinery; then one section per env, read top to bottom (its world, drawn afresh
for every task; observation; step; reward; oracle; scripted failures; relabeling; vocabulary), each ending in
the EnvSpec that the public API dispatches on; then the public API and the command line. What each env mirrors
from its benchmark, point by point, and where and why it deviates: docs/envs.md.
`python envs.py ENV --show 1 --near-miss` prints an oracle episode and a near-miss.
"""
import argparse
import functools
import hashlib
import itertools
import json
import random
import re
import sqlite3
import string
import sys
from collections import Counter
from typing import Callable, NamedTuple

ENV_NAMES = ("shop", "lab", "sql")
SPLITS = ("train", "valid_seen", "valid_unseen", "test_seen", "test_unseen")
INVALID = "nothing happens."        # the fixed answer to any action that does not parse or cannot apply
ACTION_CAP = 200                    # longer actions are invalid: a looping model must not flood the context
TEST_SEEN_PERCENT = 20              # share of the first-observation hash space reserved for test splits
VALID_PERCENT = 10                  # and the share after it reserved for validation splits
TOKEN_RE = re.compile(r"\d|[a-z]+|[^\sa-z\d]")


def count_tokens(text: str) -> int:
    """The project's rough context estimate of one message: a token per digit, word or punctuation mark, + 2."""
    return len(TOKEN_RE.findall(text.lower())) + 2


def _clean(action):
    """Lowercased, single-spaced action; None when it is not text, too long, non-ASCII, unprintable or empty."""
    if not isinstance(action, str) or len(action) > ACTION_CAP or not action.isascii():
        return None
    if not action.isprintable():                     # tabs, newlines and NUL are not part of any action
        return None
    return " ".join(action.lower().split()) or None


def _digest(*parts) -> int:
    # sha256, not hash(): str hashes are salted per process and would break "same seed, same episode"
    return int.from_bytes(hashlib.sha256("|".join(map(str, parts)).encode()).digest()[:8], "big")


def _seen_split(first_obs: str) -> str:
    # a seen task belongs to train, valid_seen or test_seen by its first observation alone: none shares one
    bucket = _digest("split", first_obs) % 100
    return "test_seen" if bucket < TEST_SEEN_PERCENT else "valid_seen" if bucket < TEST_SEEN_PERCENT + VALID_PERCENT \
        else "train"


def _clip(text: str, cap: int) -> str:
    """Keep whole lines while they fit in `cap` tokens (an overlong first line is cut), then say "more."."""
    if count_tokens(text) - 2 <= cap:
        return text
    kept, used = [], 2                               # "more." itself costs 2 tokens
    for line in text.split("\n"):
        n = count_tokens(line) - 2
        if used + n > cap:
            if not kept:                             # cut inside the line, at a token boundary
                ends = [m.end() for m in TOKEN_RE.finditer(line.lower())]
                kept.append(line[:ends[cap - used - 1]].rstrip())
            break
        kept.append(line)
        used += n
    return "\n".join(kept + ["more."])


class _Env:
    """Shared bookkeeping: step counting, the step cap, the info dict. Subclasses write reset and _act."""
    max_steps = 10

    def __init__(self, max_steps=None):
        self.max_steps = int(max_steps or self.max_steps)
        self.done, self.end, self.t = True, None, 0   # step() before reset() answers "nothing happens."

    def step(self, action):
        if self.done:
            return INVALID, 0.0, True, {"valid": False, "success": self.end == "success", "end": self.end, "scores": {},
                                        "why": "the episode is over"}
        self.t += 1
        a = _clean(action)
        obs, valid, end, reward, scores = self._act(a)
        if end is None and self.t >= self.max_steps:  # the cap turns any unfinished episode into a timeout
            end, reward = "timeout", self.timeout_reward()
        self.done, self.end = end is not None, end
        info = {"valid": valid, "success": end == "success", "end": end, "scores": scores}
        if not valid:   # for a person (--play): the agent reads only "nothing happens."; _act changed nothing
            info["why"] = _refused(action) if a is None else self._why(a)
        return obs, (reward if self.done else 0.0), self.done, info

    def timeout_reward(self) -> float:
        return 0.0                                    # shop and sql: no purchase / no submit scores 0

    def _why(self, a: str) -> str:
        """Why _act refused the cleaned action `a`, read off the unchanged state. Each env says it better."""
        return "the action does not parse or cannot apply here"


UNDIRECTED_END = 0.1  # the undirected policy's chance a step of taking an action that ends the episode


def _undirected_pick(rng, choices: list, ending: list) -> str:
    """Pretraining's undirected policy: an action that ends the episode (buy, submit, focus) with probability
    UNDIRECTED_END where there is one, else any other well-formed action, uniformly. Uniform over all of them would
    end most episodes in their first steps (a lab focus is a final answer), showing little of the environment."""
    return rng.choice(ending) if ending and rng.random() < UNDIRECTED_END else rng.choice(choices)


def _refused(action) -> str:
    """Why _clean refused an action."""
    if not isinstance(action, str):
        return f"an action is text, not {type(action).__name__}"
    if len(action) > ACTION_CAP:
        return f"longer than {ACTION_CAP} characters"
    if not action.isascii():
        return "not ASCII"
    return "holds a tab, newline or other unprintable character" if not action.isprintable() else "empty"


def _unparsed(a: str, verbs: tuple, expected: str) -> str:
    """The reason for an action that matches none of the env's forms: its first word, or its shape."""
    verb = re.match(r"[a-z]*", a)[0]
    return (f"unknown verb '{verb}'" if verb and verb not in verbs else "the action does not parse") + \
        f": expected {expected}"


_NOPE = (INVALID, False, None, 0.0, {})              # what _act returns for an invalid action (step adds info["why"])


class EnvSpec(NamedTuple):
    """What one environment provides. Each section below ends with its own; the public API reads them."""
    env: type                  # reset(task) -> first observation; step(action) -> (obs, reward, done, info)
    draw: Callable             # (rng, unseen) -> (slots, first observation): one task, held out iff unseen
    oracle: Callable           # task -> the expert's actions (reward 1.0), acting only on what the transcript shows
    failures: Callable         # task -> {near-miss name: actions}, for the modes this task allows
    bands: dict                # near-miss name -> (lowest reward, highest reward, what it does)
    relabel: Callable          # (slots, rng) -> the slots renamed and reordered, meaning unchanged
    lexicon: Callable          # () -> texts that together hold every word the env prints or accepts
    random_action: Callable    # rng -> a plausible action: one of the env's templates filled with its words
    keep: Callable = lambda slots: True   # whether a drawn task is usable (checked after its split)


# =========================================================================================== ToyShop
SHOP_CATEGORIES = {  # category: (types, attribute pool, first option dimension); the second is always size
    "clothing": (("shirt", "dress", "jacket", "pants"), ("cotton", "wool", "waterproof", "organic", "slim"), "color"),
    "shoes": (("boots", "sneakers", "sandals"), ("leather", "vegan", "waterproof", "light", "classic"), "color"),
    "home": (("mug", "lamp", "pillow", "towel"), ("ceramic", "cotton", "modern", "soft", "classic"), "color"),
    "beauty": (("soap", "shampoo", "lotion"), ("organic", "vegan", "natural", "fresh", "gentle"), "scent"),
}
SHOP_VALUES = {"color": ("red", "blue", "black", "white", "green", "grey"),
               "scent": ("mint", "lemon", "rose", "vanilla", "lavender"), "size": ("small", "medium", "large")}
SHOP_TYPES = {t: (cat, attrs, dim) for cat, (types, attrs, dim) in SHOP_CATEGORIES.items() for t in types}
PAGE = 3                                               # results per page; at most 3 pages are listed
SHOP_PRODUCTS = 14                                     # products in one episode's shop
SHOP_PRICES = tuple(p for p in range(11, 80) if p % 10)   # never a multiple of 10: "under $30" is never a tie
SHOP_CODES = list(string.ascii_lowercase)             # product ids: a fresh letter per product and episode
# Held out of training goals: type i of its category with attribute 2i mod 5 (distinct within a category, so
# every attribute is still asked for with other types) and with first-dimension value 3i+1 (about 10%).
SHOP_HELD_OUT = {(t, pair) for types, attrs, dim in SHOP_CATEGORIES.values() for i, t in enumerate(types)
                 for pair in (attrs[2 * i % 5], SHOP_VALUES[dim][(3 * i + 1) % len(SHOP_VALUES[dim])])}
def _ceil10(price: int) -> int:
    return (price // 10 + 1) * 10


def _shop_draw(rng, unseen: bool) -> tuple:
    """One task: a goal (held out iff `unseen`) and the shop it is bought in; the instruction comes first."""
    goal = _shop_goal(rng, unseen)
    return {"goal": goal, "products": _shop_world(rng, goal)}, _shop_instruction(goal)


def _shop_goal(rng, unseen: bool) -> dict:
    """A goal (type, one or two attributes, two option values, budget) that is held out iff `unseen`."""
    while True:
        t = rng.choice(sorted(SHOP_TYPES))
        _, pool, dim = SHOP_TYPES[t]
        attrs = rng.sample(pool, rng.choice((1, 2)))
        options = {dim: rng.choice(SHOP_VALUES[dim]), "size": rng.choice(SHOP_VALUES["size"])}
        if any((t, x) in SHOP_HELD_OUT for x in attrs + [options[dim]]) == unseen:
            return {"type": t, "attrs": attrs, "options": options, "budget": _ceil10(rng.choice(SHOP_PRICES))}


def _shop_world(rng, goal) -> list:
    """One episode's shop, drawn afresh: the product that meets the goal, the confusers WebShop's near-misses
    come from (siblings with one attribute different, over-budget twins, the same attributes on another type of
    the category, another category) and random fillers. Ids are fresh codes, prices, offered option values,
    title word order and listing order are drawn per episode, so nothing is learned by name: the goal's product
    is found only by reading titles and prices. Exactly one product shows every asked-for attribute of the
    asked-for type under budget (the oracle clicks the first such one; fillers that would also qualify are
    redrawn)."""
    t, want, budget = goal["type"], set(goal["attrs"]), goal["budget"]
    cat, pool, _ = SHOP_TYPES[t]
    cheap = [p for p in SHOP_PRICES if p < budget]
    dear = [p for p in SHOP_PRICES if p > budget] or [budget + 9]

    def product(kind, attrs, price, offers=True):
        dims = {SHOP_TYPES[kind][2]: 3, "size": 2}
        options = {}
        for d, n in dims.items():              # n of the dimension's values, the goal's among them if it offers
            must = [goal["options"][d]] if offers and d in goal["options"] else []
            rest = rng.sample([v for v in SHOP_VALUES[d] if v not in must], n - len(must))
            options[d] = sorted(must + rest, key=SHOP_VALUES[d].index)
        return {"type": kind, "attrs": rng.sample(attrs, len(attrs)), "price": price, "options": options}

    def fill(attrs):                           # two attributes: the asked ones, topped up from the type's pool
        return list(attrs) + rng.sample([a for a in pool if a not in attrs], 2 - len(attrs))

    def qualifies(p):
        return p["type"] == t and want <= set(p["attrs"]) and p["price"] < budget

    products = [product(t, fill(goal["attrs"]), rng.choice(cheap))]                     # the goal's product
    products += [product(t, fill(goal["attrs"]), rng.choice(dear)) for _ in range(rng.randint(1, 3))]   # over budget
    for _ in range(rng.randint(1, 2)):                                         # siblings: one attribute off
        keep = rng.sample(sorted(want), len(want) - 1)
        others = rng.sample([a for a in pool if a not in want], 2 - len(keep))
        products.append(product(t, keep + others, rng.choice(cheap)))
    others = [x for x in SHOP_CATEGORIES[cat][0] if x != t]
    products.append(product(rng.choice(others), fill(goal["attrs"]), rng.choice(cheap)))                # another type
    far = rng.choice([x for x in SHOP_TYPES if SHOP_TYPES[x][0] != cat])                       # another category
    products.append(product(far, rng.sample(SHOP_TYPES[far][1], 2), rng.choice(SHOP_PRICES), offers=False))
    while len(products) < SHOP_PRODUCTS:                                       # fillers, half from the category
        kind = rng.choice(others + [t] if rng.random() < 0.5 else sorted(SHOP_TYPES))
        p = product(kind, rng.sample(SHOP_TYPES[kind][1], 2), rng.choice(SHOP_PRICES), offers=False)
        if not qualifies(p):
            products.append(p)
    rng.shuffle(products)                      # the listing order breaks search ties
    return [dict(p, id=i) for p, i in zip(products, _shop_ids(rng, len(products)))]


def _shop_ids(rng, n: int) -> list:
    """n distinct product ids, letters drawn afresh for every shop: one token each, the same token on the page
    (`[k]`) and in the action (`click[k]`), so clicking a listed product is copying what the page shows. An id
    names nothing across episodes (the letter k is another product in every shop)."""
    return rng.sample(SHOP_CODES, n)


def _shop_instruction(goal) -> str:
    (dim, value), (_, size) = goal["options"].items()
    return f"buy {' '.join(goal['attrs'])} {goal['type']}, {dim} {value}, size {size}, under ${goal['budget']}."


def _shop_title(p) -> str:
    # the id comes last, in brackets like WebShop's clickable ids: a left-to-right model meets the facts that
    # pick a line (title, price) before the id it then copies
    return f"{' '.join(p['attrs'])} {p['type']} ${p['price']} [{p['id']}]"


def _shop_search(products, words) -> list:
    """Deterministic search: a point per query word among the attributes, two more when the type is asked for;
    ties keep the listing order; at most 3 pages."""
    q = set(words)
    scored = [(-(len(q & set(p["attrs"])) + 2 * (p["type"] in q)), i) for i, p in enumerate(products)]
    return [products[i] for s, i in sorted(scored) if s < 0][:3 * PAGE]


class ToyShop(_Env):
    """WebShop mirror: every episode has its own small shop (fresh ids, prices, offered options, title word
    order, listing order); search it, open a product, click its options, buy. 10-step cap.

    Reward (WebShop's, exact matching): r_type * (attrs matched + options matched + price ok) / (|attrs| +
    |options| + 1), r_type 1 for the asked type, 0.5 for another type of its category, 0 otherwise.
    """
    max_steps = 10

    def reset(self, task):
        self.goal = task["slots"]["goal"]
        self.listing = task["slots"]["products"]
        self.products = {p["id"]: p for p in self.listing}
        self.done, self.end, self.t = False, None, 0
        self.results, self.page, self.item, self.chosen = [], 0, None, {}
        return _shop_instruction(self.goal)

    def visible(self) -> list:
        """The products listed on the current results page (what the last results observation showed)."""
        return self.results[PAGE * self.page:PAGE * (self.page + 1)] if self.item is None else []

    def _page_text(self) -> str:
        n = (len(self.results) + PAGE - 1) // PAGE
        return "\n".join([f"page {self.page + 1} of {n}"] + [_shop_title(p) for p in self.visible()])

    def _item_text(self) -> str:
        p = self.item
        return "\n".join([_shop_title(p)] + [f"{dim}: {' '.join(values)}" for dim, values in p["options"].items()])

    def _act(self, a):
        m = re.fullmatch(r"(search|click)\[(.+)\]", a or "")
        if not m:
            return _NOPE
        verb, arg = m[1], m[2].strip()
        if verb == "search":
            if not all(w.isalpha() for w in arg.split()):
                return _NOPE
            self.results, self.page, self.item = _shop_search(self.listing, arg.split()), 0, None
            return (self._page_text() if self.results else "no results."), True, None, 0.0, {}
        pages = (len(self.results) + PAGE - 1) // PAGE
        if self.item is None and (arg == "next >" and self.page + 1 < pages or arg == "< prev" and self.page > 0):
            self.page += 1 if arg == "next >" else -1
            return self._page_text(), True, None, 0.0, {}
        if self.item is None and arg in [p["id"] for p in self.visible()]:
            self.item, self.chosen = self.products[arg], {}
            return self._item_text(), True, None, 0.0, {}
        if self.item is not None and arg == "back":
            self.item = None
            return self._page_text(), True, None, 0.0, {}
        if self.item is not None and arg == "buy now":
            reward, scores = shop_reward(self.goal, self.item, self.chosen)
            return "thank you for your order.", True, ("success" if reward == 1.0 else "wrong"), reward, scores
        for dim, values in (self.item or {"options": {}})["options"].items():
            if arg in values:
                self.chosen[dim] = arg
                return f"selected {dim} {arg}.", True, None, 0.0, {}
        return _NOPE

    def _why(self, a: str) -> str:
        m = re.fullmatch(r"(search|click)\[(.+)\]", a)
        if not m:
            return _unparsed(a, ("search", "click"), "search[words] or click[...]")
        arg = m[2].strip()
        if m[1] == "search":
            return "search takes words of letters only"
        if self.item is not None:
            offers = "; ".join(" ".join(values) for values in self.item["options"].values())
            return f"this product has no '{arg}' to click (options: {offers}; or back, buy now)"
        if not self.results:
            return f"nothing is listed, so no '{arg}' to click: search first"
        if arg in ("next >", "< prev"):
            return "there is no next page" if arg == "next >" else "this is the first page"
        if arg in ("back", "buy now"):
            return f"click[{arg}] needs an open product: click a listed product's id first"
        return f"no product '{arg}' on this page"

    def undirected(self, rng, messages) -> str:
        """An undirected action (pretraining's policy): uniform over what the current page makes well-formed:
        a search for 1-3 words of the instruction, a listed id, next or previous page; on a product page one of
        its options, back, buy now. It reads the page as the observation shows it and wants nothing."""
        words = re.findall(r"[a-z]+", _shop_instruction(self.goal))
        choices = [f"search[{' '.join(rng.sample(words, rng.randint(1, 3)))}]"]
        if self.item is not None:
            choices += [f"click[{v}]" for values in self.item["options"].values() for v in values] + ["click[back]"]
        elif self.results:
            pages = (len(self.results) + PAGE - 1) // PAGE
            choices += [f"click[{p['id']}]" for p in self.visible()]
            choices += ["click[next >]"] * (self.page + 1 < pages) + ["click[< prev]"] * (self.page > 0)
        return _undirected_pick(rng, choices, ["click[buy now]"] if self.item is not None else [])


def shop_reward(goal, product, chosen) -> tuple:
    """WebShop's score with exact matching; an option never clicked is a miss. Returns (reward, parts)."""
    same_cat = SHOP_TYPES[product["type"]][0] == SHOP_TYPES[goal["type"]][0]
    r_type = 1.0 if product["type"] == goal["type"] else 0.5 if same_cat else 0.0
    attrs = sum(a in product["attrs"] for a in goal["attrs"])
    options = sum(chosen.get(dim) == v for dim, v in goal["options"].items())
    price = int(product["price"] < goal["budget"])
    total = len(goal["attrs"]) + len(goal["options"]) + 1
    scores = {"r_type": r_type, "attrs": attrs, "options": options, "price": price, "of": total}
    return round(r_type * (attrs + options + price) / total, 4), scores


def _shop_matches(p, goal) -> bool:
    """What the oracle can check on a results line: type, attributes (in the title) and price."""
    return p["type"] == goal["type"] and set(goal["attrs"]) <= set(p["attrs"]) and p["price"] < goal["budget"]


def _shop_oracle(task) -> list:
    """Search the goal's words, click the first listed product that meets every visible constraint, buy."""
    goal, env = task["slots"]["goal"], ToyShop()
    env.reset(task)
    acts = [f"search[{' '.join(goal['attrs'])} {goal['type']}]"]
    env.step(acts[-1])
    while not any(_shop_matches(p, goal) for p in env.visible()):
        acts.append("click[next >]")
        assert env.step(acts[-1])[3]["valid"], "the goal's product always ranks within 3 pages"
    hit = next(p for p in env.visible() if _shop_matches(p, goal))
    return acts + [f"click[{hit['id']}]"] + [f"click[{v}]" for v in goal["options"].values()] + ["click[buy now]"]


SHOP_BANDS = {  # scripted near-miss -> (low, high, what it does)
    "option_wrong": (0.75, 0.8, "right product, one option value wrong"),
    "option_unclicked": (0.75, 0.8, "right product, size never clicked"),
    "sibling": (0.75, 0.8, "same type, one attribute different"),
    "over_budget": (0.75, 0.8, "same type and attributes, over budget"),
    "options_unclicked": (0.5, 0.6, "right product, no option clicked"),
    "other_type": (0.5, 0.5, "another type of the same category"),
    "other_category": (0.0, 0.0, "a product of another category"),
    "no_purchase": (0.0, 0.0, "never buys (timeout)")}


def _shop_buy(task, product, options) -> list:
    """Actions that find `product` by its title, open it, click the given option values it offers, buy."""
    env = ToyShop()
    env.reset(task)
    acts = [f"search[{' '.join(product['attrs'])} {product['type']}]"]
    env.step(acts[-1])
    while product not in env.visible() and env.step("click[next >]")[3]["valid"]:
        acts.append("click[next >]")
    acts.append(f"click[{product['id']}]")
    acts += [f"click[{v}]" for dim, v in options.items() if v in product["options"].get(dim, ())]
    return acts + ["click[buy now]"]


def _shop_failures(task) -> dict:
    goal, acts, products = task["slots"]["goal"], _shop_oracle(task), task["slots"]["products"]
    clicked = next(p for p in products if acts[-4] == f"click[{p['id']}]")   # ..., click[id], value, size, buy
    (dim, value), _ = goal["options"].items()
    other = next(v for v in clicked["options"][dim] if v != value)       # every product offers 3 values
    out = {"option_wrong": acts[:-3] + [f"click[{other}]"] + acts[-2:],
           "option_unclicked": acts[:-2] + acts[-1:], "options_unclicked": acts[:-3] + acts[-1:],
           "no_purchase": acts[:-1]}
    # the confusers every world has (_shop_world), each differing from the goal in one respect
    cat, attrs = SHOP_TYPES[goal["type"]][0], set(goal["attrs"])
    offers = lambda p: all(v in p["options"].get(d, ()) for d, v in goal["options"].items())
    kinds = {"sibling": lambda p: p["type"] == goal["type"] and len(attrs & set(p["attrs"])) == len(attrs) - 1
             and offers(p) and p["price"] < goal["budget"],
             "over_budget": lambda p: p["type"] == goal["type"] and attrs <= set(p["attrs"]) and offers(p)
             and p["price"] > goal["budget"],
             "other_type": lambda p: p["type"] != goal["type"] and SHOP_TYPES[p["type"]][0] == cat
             and attrs <= set(p["attrs"]) and offers(p) and p["price"] < goal["budget"],
             "other_category": lambda p: SHOP_TYPES[p["type"]][0] != cat}
    for name, ok in kinds.items():
        product = next((p for p in products if ok(p)), None)
        if product:
            out[name] = _shop_buy(task, product, goal["options"])
    return out


def _shop_relabel(s, rng) -> dict:
    """Fresh product ids and another listing order."""
    codes = _shop_ids(rng, len(s["products"]))
    s["products"] = [dict(p, id=i) for p, i in zip(rng.sample(s["products"], len(s["products"])), codes)]
    return s


def _shop_lexicon() -> list:
    return ([" ".join(types + attrs) + f" {dim}" for types, attrs, dim in SHOP_CATEGORIES.values()] +
            [f"{dim}: {' '.join(v)}" for dim, v in SHOP_VALUES.items()] +
            ["buy wool shirt, color red, size large, under $30.", "page 1 of 3", "no results.",
             "selected size large.", "thank you for your order.", INVALID,
             "search[wool shirt] click[a0] click[next >] click[< prev] click[back] click[buy now]",
             " ".join(string.ascii_lowercase), " ".join(string.digits)])


def _shop_random_action(rng) -> str:
    words, code = sorted(_lexicon_words("shop")), rng.choice(SHOP_CODES)   # ids are fresh codes
    return rng.choice([f"search[{' '.join(rng.sample(words, rng.randint(1, 3)))}]", f"click[{code}]",
                       f"click[{rng.choice(words)}]", "click[next >]", "click[< prev]", "click[back]",
                       "click[buy now]"])


SHOP = EnvSpec(ToyShop, _shop_draw, _shop_oracle, _shop_failures, SHOP_BANDS, _shop_relabel, _shop_lexicon,
               _shop_random_action)


# =========================================================================================== ToyLab
ROOMS = ("kitchen", "workshop", "studio", "garden")   # also the oracle's fixed search order
FIXED = {"kitchen": ("stove", "freezer"), "workshop": ("thermometer", "red box", "blue box"),
         "studio": ("bowl", "recipe"), "garden": ()}
CONTAINERS = ("stove", "freezer", "bowl", "red box", "blue box")
FIXED_ONLY = CONTAINERS + ("recipe",)                  # furniture cannot be carried
SOLIDS = ("wax", "butter", "chocolate", "cheese")
LIQUIDS = ("water", "juice", "milk", "soup", "oil")
THINGS = ("moss", "fern", "cactus", "bee", "snail", "frog", "rock", "coin", "key")
PAINTS = ("red", "blue", "yellow", "white", "black")
MIXES = {("blue", "red"): "purple", ("blue", "yellow"): "green", ("red", "yellow"): "orange",
         ("red", "white"): "pink", ("black", "white"): "grey"}   # any other mixture turns brown
LAB_TARGETS = {"melt": SOLIDS, "boil": LIQUIDS[:4], "freeze": LIQUIDS[:4], "mix": tuple(MIXES.values()),
               "find": THINGS, "measure": SOLIDS + LIQUIDS}
LAB_HELD_OUT = {("freeze", "juice"), ("melt", "wax"), ("mix", "purple"), ("find", "moss"), ("measure", "oil")}
BOXES = ("red box", "blue box")
STATES = ("solid", "liquid", "gas")
CHANGE_WORDS = {("solid", "liquid"): "melts", ("liquid", "gas"): "boils", ("liquid", "solid"): "freezes",
                ("gas", "liquid"): "condenses"}
def _other_box(box: str) -> str:
    return BOXES[1 - BOXES.index(box)]


def _lab_draw(rng, unseen: bool) -> tuple:
    """One task: family and target, where things lie (at most 2 placed per room), start room, readings;
    its first observation is the instruction and the start room's listing."""
    choices = {f: [t for t in ts if ((f, t) in LAB_HELD_OUT) == unseen] for f, ts in LAB_TARGETS.items()}
    family = rng.choice([f for f in LAB_TARGETS if choices[f]])
    target = rng.choice(choices[family])
    pair = next(k for k, v in MIXES.items() if v == target) if family == "mix" else rng.choice(sorted(MIXES))
    recipe = [*pair, MIXES[pair]]                      # the studio's recipe; only a mix task needs it
    rooms = {r: list(FIXED[r]) for r in ROOMS}
    paints = (recipe[:2] + [rng.choice([p for p in PAINTS if p not in recipe])] if family == "mix"
              else [rng.choice(PAINTS)])
    rooms["studio"] += [f"{p} paint" for p in rng.sample(paints, len(paints))]
    placed = ([] if family == "mix" else [target]) + rng.sample(
        [o for o in SOLIDS + LIQUIDS + THINGS if o != target], 2)
    for obj in placed:                                 # the full studio of a mix task takes nothing more
        rooms[rng.choice([r for r in ROOMS if len(rooms[r]) - len(FIXED[r]) - (r == "studio") < 2
                          and not (family == "mix" and r == "studio")])].append(obj)
    # listing order drawn per episode: furniture first and things after would let an agent act on positions
    # instead of names (the reading benchmark lost 20 of 83 points when only the order was shuffled)
    rooms = {r: rng.sample(objs, len(objs)) for r, objs in rooms.items()}
    slots = {"task": family, "target": target, "start": rng.choice(ROOMS), "rooms": rooms, "recipe": recipe,
             "temps": {o: rng.randrange(5, 96) for o in placed}, "box": rng.choice(BOXES)}
    if family == "measure":                            # readings never within 5 degrees of the threshold
        slots["threshold"] = rng.choice((30, 40, 50, 60))
        slots["temps"][target] = rng.choice([t for t in range(5, 96) if abs(t - slots["threshold"]) >= 5])
    return slots, ToyLab().reset({"slots": slots})


def _lab_instruction(s) -> str:
    family, target, box = s["task"], s["target"], s["box"]
    if family == "mix":
        return f"your task is to make {target} paint. focus on it when done."
    if family == "find":
        return f"your task is to find the {target}. focus on it, then put it in the {box}."
    if family == "measure":
        return (f"your task is to measure the {target}. if above {s['threshold']} degrees, focus on the {box}, "
                f"else on the {_other_box(box)}.")
    return f"your task is to {family} the {target}. focus on it first."


class ToyLab(_Env):
    """ScienceWorld mirror: 4 rooms, teleport between them, change a state, mix paint, find and deliver,
    measure. 15-step cap. One tick per valid action: 2 ticks in an active stove raise a substance's state,
    2 ticks in the freezer lower it.

    Score = k/n + w * u/m, capped at 1 (k of n ordered subgoals, u of m optional ones, w = 1/(n+1) unless
    optional_weight is given). Focusing on a wrong object ends the episode. The reward is the best score
    reached in the episode (ETO's rule); reward="final" scores the last state instead (0 after a wrong focus).
    """
    max_steps = 15

    def __init__(self, max_steps=None, reward="best", optional_weight=None):
        super().__init__(max_steps)
        if reward not in ("best", "final"):
            raise ValueError(f"lab reward must be 'best' or 'final', got {reward!r}")
        self.reward_rule, self.optional_weight = reward, optional_weight

    def reset(self, task):
        s = self.s = task["slots"]
        self.done, self.end, self.t = False, None, 0
        self.room, self.stove_on, self.read = s["start"], False, False
        self.where = {obj: room for room in ROOMS for obj in s["rooms"][room]}   # room, container or "inventory"
        self.state = {o: "solid" if o in SOLIDS else "liquid" for o in self.where if o in SOLIDS + LIQUIDS}
        self.heat = dict.fromkeys(self.state, 0)
        self.focused, self.held, self.measured = set(), set(), set()
        self.k, self.optional, self.score, self.best = 0, set(), 0.0, 0.0
        self.required, self.extra, self.focus_target = self._subgoals()
        return _lab_instruction(s) + "\n" + self.listing()

    def _subgoals(self):
        """(ordered required subgoals, optional ones, the object to focus on) as predicates on the state."""
        s, t, w = self.s, self.s["target"], self.where
        if s["task"] == "mix":
            a, b, c = (f"{x} paint" for x in s["recipe"])
            return ([lambda: "bowl" in (w.get(a), w.get(b)), lambda: w.get(a) == w.get(b) == "bowl",
                     lambda: c in w, lambda: c in self.focused], [lambda: self.read], c)
        if s["task"] == "find":
            return ([lambda: t in self.focused, lambda: t in self.held, lambda: w.get(t) == s["box"]],
                    [lambda: self.room == "workshop" and w.get(t) == "inventory"], t)
        if s["task"] == "measure":
            right = s["box"] if s["temps"][t] > s["threshold"] else _other_box(s["box"])
            return ([lambda: "thermometer" in self.held, lambda: t in self.measured, lambda: right in self.focused],
                    [lambda: self.room == "workshop" and t in self.measured], right)
        dev = "freezer" if s["task"] == "freeze" else "stove"
        want = {"melt": "liquid", "boil": "gas", "freeze": "solid"}[s["task"]]
        working = (lambda: self.stove_on) if dev == "stove" else (lambda: self.heat[t] <= -1)
        return ([lambda: t in self.focused, lambda: w.get(t) == dev, lambda: w.get(t) == dev and working(),
                 lambda: self.state[t] == want], [lambda: t in self.held], t)

    def listed(self) -> list:
        """The objects the current room's listing shows (the oracle reads only these)."""
        return [o for o, loc in self.where.items() if loc == self.room]

    def listing(self) -> str:
        return f"{self.room}: {', '.join(self.listed()) or 'empty'}."

    def _visible(self, obj) -> bool:
        loc = self.where.get(obj)
        return loc in (self.room, "inventory") or (loc in CONTAINERS and self.where[loc] == self.room)

    def _do(self, a):
        """Apply one action; the message, or None when it cannot apply here."""
        m = re.fullmatch(r"(go to|take|put|focus on|use thermometer on) (.+)|look|wait|(activate|deactivate) stove"
                         r"|mix bowl|read recipe", a or "")
        if not m:
            return None
        verb, arg = m[1] or m[3], m[2]
        if a in ("look", "wait"):
            return self.listing() if a == "look" else "you wait."
        if verb == "go to" and arg in ROOMS:
            self.room = arg
            return self.listing()
        if verb == "take" and self._visible(arg) and self.where[arg] != "inventory" and arg not in FIXED_ONLY:
            self.where[arg], self.heat[arg] = "inventory", 0
            self.held.add(arg)
            return f"you take the {arg}."
        if verb == "put" and " in " in arg:
            x, y = arg.rsplit(" in ", 1)
            if x in self.where and x not in FIXED_ONLY and self.where[x] in (self.room, "inventory") \
                    and y in CONTAINERS and self.where[y] == self.room:
                self.where[x], self.heat[x] = y, 0
                return f"you put the {x} in the {y}."
        if verb in ("activate", "deactivate") and self.where["stove"] == self.room:
            self.stove_on = verb == "activate"
            return f"the stove is {'on' if self.stove_on else 'off'}."
        if a == "mix bowl" and self.where["bowl"] == self.room:
            inside = [o for o, loc in self.where.items() if loc == "bowl"]
            if not inside:
                return "the bowl is empty."
            paints = [o for o in inside if o.endswith(" paint")]
            if not paints:
                return "nothing in the bowl mixes."
            # paints mix into one (anything else in the bowl spoils it brown and stays there, so an object named
            # later, the thermometer say, still exists)
            key = tuple(sorted(o[:-6] for o in paints))
            result = MIXES.get(key, "brown") if len(paints) == len(inside) else "brown"
            for o in paints:
                del self.where[o]
            self.where[f"{result} paint"] = "bowl"
            return f"the bowl holds {result} paint."
        if a == "read recipe" and self.where["recipe"] == self.room:
            self.read = True
            x, y, z = self.s["recipe"]
            return f"recipe: {x} paint and {y} paint make {z} paint."
        if verb == "use thermometer on" and self.where.get("thermometer") == "inventory" and self._visible(arg):
            self.measured.add(arg)
            return f"the {arg} is {self.s['temps'].get(arg, 20)} degrees."
        if verb == "focus on" and self._visible(arg):
            self.focused.add(arg)
            return f"you focus on the {arg}."
        return None

    def _tick(self) -> list:
        """One tick of time: heat in an active stove, cold in the freezer; 2 ticks change a state."""
        events = []
        for o in self.state:
            loc = self.where.get(o)                   # None once mixed away in the bowl
            delta = 1 if loc == "stove" and self.stove_on else -1 if loc == "freezer" else 0
            i = STATES.index(self.state[o])
            if delta == 0 or not 0 <= i + delta < len(STATES):
                continue
            self.heat[o] += delta
            if abs(self.heat[o]) >= 2:
                new = STATES[i + delta]
                events.append(f"the {o} {CHANGE_WORDS[self.state[o], new]}.")
                self.state[o], self.heat[o] = new, 0
        return events

    def _act(self, a):
        msg = self._do(a)
        if msg is None:
            return _NOPE
        msg = " ".join([msg] + self._tick())
        while self.k < len(self.required) and self.required[self.k]():   # ordered: a prefix counts
            self.k += 1
        self.optional |= {i for i, done in enumerate(self.extra) if done()}
        n, w = len(self.required), self.optional_weight
        w = 1 / (n + 1) if w is None else w
        self.score = round(min(1.0, self.k / n + w * len(self.optional) / len(self.extra)), 4)
        self.best = max(self.best, self.score)
        scores = {"score": self.score, "best": self.best, "subgoals": self.k, "of": n, "optional": len(self.optional)}
        if self.k == n:
            return msg + " task complete.", True, "success", 1.0, scores
        # focusing on a wrong object fails the task; in measure, focusing on either box is the final answer
        if a.startswith("focus on ") and (a[9:] != self.focus_target or self.s["task"] == "measure"):
            return msg + " task failed.", True, "wrong", (self.best if self.reward_rule == "best" else 0.0), scores
        return msg, True, None, 0.0, scores

    def timeout_reward(self) -> float:
        return self.best if self.reward_rule == "best" else self.score

    def _why(self, a: str) -> str:
        m = re.fullmatch(r"(go to|take|put|focus on|use thermometer on) (.+)|look|wait|(activate|deactivate) stove"
                         r"|mix bowl|read recipe", a)
        if not m:
            verbs = ("go", "take", "put", "focus", "use", "look", "wait", "activate", "deactivate", "mix", "read")
            return _unparsed(a, verbs, PLAY_HELP["lab"])
        verb, arg, w = m[1] or m[3], m[2], self.where
        if verb == "go to":
            return f"no room '{arg}' (rooms: {', '.join(ROOMS)})"
        if verb in ("take", "put") and arg in FIXED_ONLY:
            return f"the {arg} cannot be carried"
        if verb == "take" and w.get(arg) == "inventory":
            return f"you already hold the {arg}"
        if verb == "put":
            if " in " not in arg:
                return "expected put X in Y"
            x, y = arg.rsplit(" in ", 1)
            if x in FIXED_ONLY:
                return f"the {x} cannot be carried"
            if w.get(x) in CONTAINERS and self._visible(x):
                return f"the {x} is in the {w[x]}: take it first"
            if w.get(x) not in (self.room, "inventory"):
                return f"no {x} here"
            if y not in CONTAINERS:
                return f"the {y} is no container"
            arg = y
        if verb == "use thermometer on" and w.get("thermometer") != "inventory":
            return "you do not hold the thermometer"
        if verb in ("activate", "deactivate") or verb is None:   # (de)activate stove, mix bowl, read recipe
            arg = a.split()[-1]
        return f"no {arg} here"

    def undirected(self, rng, messages) -> str:
        """An undirected action (pretraining's policy): uniform over the verbs the room makes well-formed, on
        the objects it shows (and those held): look, wait, go to another room, take, put in a container here,
        focus on, use the thermometer on, the stove's switch, mix the bowl, read the recipe."""
        shown = [o for o in self.where if self._visible(o)]
        carry = [o for o in shown if o not in FIXED_ONLY and self.where[o] != "inventory"]
        held = [o for o, loc in self.where.items() if loc == "inventory" or loc == self.room and o not in FIXED_ONLY]
        here = [c for c in CONTAINERS if self.where.get(c) == self.room]
        choices = ["look", "wait"] + [f"go to {r}" for r in ROOMS if r != self.room]
        choices += [f"take {o}" for o in carry] + [f"put {o} in {c}" for o in held for c in here if o != c]
        if self.where.get("thermometer") == "inventory":
            choices += [f"use thermometer on {o}" for o in shown if o != "thermometer"]
        if self.where["stove"] == self.room:
            choices += ["activate stove", "deactivate stove"]
        choices += ["mix bowl"] * (self.where["bowl"] == self.room)
        choices += ["read recipe"] * (self.where["recipe"] == self.room)
        return _undirected_pick(rng, choices, [f"focus on {o}" for o in shown])


def _lab_oracle(task) -> list:
    """Visit rooms in a fixed order (or go back to where the transcript showed it) to find what is needed."""
    s, env, acts = task["slots"], ToyLab(), []
    env.reset(task)
    memory = {env.room: env.listed()}                  # what each room's listing showed when last entered

    def do(a):
        acts.append(a)
        return env.step(a)

    def go(room):
        if env.room != room:
            do(f"go to {room}")
            memory[room] = env.listed()

    def seek(obj):
        for room in [r for r in memory if obj in memory[r]] + [r for r in ROOMS if r not in memory]:
            go(room)
            if obj in memory[room]:
                return

    t, family = s["target"], s["task"]
    if family == "mix":
        go("studio")
        do("read recipe")
        do(f"put {s['recipe'][0]} paint in bowl")
        do(f"put {s['recipe'][1]} paint in bowl")
        do("mix bowl")
        do(f"focus on {t} paint")
    elif family == "find":
        seek(t)
        do(f"focus on {t}")
        do(f"take {t}")
        go("workshop")
        do(f"put {t} in {s['box']}")
    elif family == "measure":
        go("workshop")
        do("take thermometer")
        seek(t)
        reading = int(do(f"use thermometer on {t}")[0].split()[3])    # "the oil is 65 degrees."
        go("workshop")
        do(f"focus on {s['box'] if reading > s['threshold'] else _other_box(s['box'])}")
    else:
        seek(t)
        do(f"focus on {t}")
        do(f"take {t}")
        go("kitchen")
        do(f"put {t} in {'freezer' if family == 'freeze' else 'stove'}")
        if family != "freeze":
            do("activate stove")
        while not env.done:
            do("wait")
    return acts


LAB_BANDS = {  # scripted near-miss -> (low, high, what it does)
    "no_final_focus": (0.95, 0.95, "mix: right mix, no final focus"),
    "no_wait": (0.95, 0.95, "state change: stops one tick before it"),
    "wrong_box": (0.9167, 0.9167, "find, measure: the other box"),
    "not_carried": (0.6667, 0.9167, "find: takes it, never delivers"),
    "no_activate": (0.7, 0.7, "melt, boil: forgets to activate the stove"),
    "skip_mix": (0.7, 0.7, "mix: paints in the bowl, never mixed"),
    "wrong_paint": (0.45, 0.45, "mix: one wrong paint, focus on the result"),
    "guess_box": (0.3333, 0.3333, "measure: picks a box without measuring"),
    "no_focus": (0.2, 0.25, "state change, find: never focuses on it"),
    "wrong_focus": (0.0, 0.0, "focuses on a wrong object at once")}


def _lab_failures(task) -> dict:
    s, acts = task["slots"], _lab_oracle(task)
    t, family = s["target"], s["task"]
    out = {"wrong_focus": ["go to kitchen", "focus on stove"]}
    if family == "mix":
        a, b, c = s["recipe"]
        wrong = next(p for p in s["rooms"]["studio"] if p.endswith(" paint") and p[:-6] not in (a, b))[:-6]
        mixed = MIXES.get(tuple(sorted((a, wrong))), "brown")
        out.update(no_final_focus=acts[:-1], skip_mix=acts[:-2],
                   wrong_paint=[x.replace(f"put {b} paint", f"put {wrong} paint") for x in acts[:-1]]
                   + [f"focus on {mixed} paint"])
    elif family == "find":
        out.update(wrong_box=acts[:-1] + [f"put {t} in {_other_box(s['box'])}"],
                   not_carried=acts[:acts.index(f"take {t}") + 1],
                   no_focus=[x for x in acts if x != f"focus on {t}"])
    elif family == "measure":
        right = acts[-1][9:]                           # "focus on red box"
        out.update(wrong_box=acts[:-1] + [f"focus on {_other_box(right)}"],
                   guess_box=acts[:acts.index("take thermometer") + 1] + [f"focus on {right}"])
    else:
        out.update(no_wait=acts[:-1], no_focus=[x for x in acts if x != f"focus on {t}"])
        if family != "freeze":
            out["no_activate"] = [x for x in acts if x != "activate stove"]
    return out


def _lab_relabel(s, rng) -> dict:
    """Rooms list their contents in another order, objects the task does not involve take other names of their
    kind, and the two boxes swap colours (the instruction follows)."""
    keep = {s["target"]} | {f"{p} paint" for p in s["recipe"]}
    present = {o for objs in s["rooms"].values() for o in objs}
    rename = {}
    for kind in (SOLIDS, LIQUIDS, THINGS):
        free = [o for o in kind if o not in present and o != s["target"]]
        for o in sorted(present & set(kind) - keep):
            if free:
                rename[o] = free.pop(rng.randrange(len(free)))
    s["rooms"] = {r: rng.sample([rename.get(o, o) for o in objs], len(objs)) for r, objs in s["rooms"].items()}
    s["temps"] = {rename.get(o, o): v for o, v in s["temps"].items()}
    s["box"] = _other_box(s["box"])
    return s


def _lab_lexicon() -> list:
    return ([f"{r}: {', '.join(FIXED[r])}, empty." for r in ROOMS] +
            [" ".join(SOLIDS + LIQUIDS + THINGS), " ".join(PAINTS + tuple(MIXES.values())) + " brown paint",
             "your task is to melt boil freeze the wax. focus on it first.",
             "your task is to make purple paint. focus on it when done.",
             "your task is to find the moss. focus on it, then put it in the red box.",
             "your task is to measure the oil. if above 50 degrees, focus on the red box, else on the blue box.",
             "look wait go to take put in focus on use thermometer on activate deactivate stove mix bowl read recipe",
             "you wait. you take the wax. you put the wax in the stove. the stove is on. the stove is off.",
             "the bowl is empty. nothing in the bowl mixes. the bowl holds green paint. "
             "recipe: red paint and blue paint make purple paint.",
             "the wax is 20 degrees. you focus on the wax. task complete. task failed.",
             "the wax melts. the water boils. the water freezes. the water condenses.", INVALID, "0 1 2 3 4 5 6 7 8 9"])


def _lab_random_action(rng) -> str:
    objs = (list(SOLIDS + LIQUIDS + THINGS + FIXED_ONLY) + [f"{p} paint" for p in PAINTS + tuple(MIXES.values())]
            + ["thermometer"])
    o, c = rng.choice(objs), rng.choice(CONTAINERS)
    return rng.choice([f"go to {rng.choice(ROOMS)}", f"take {o}", f"put {o} in {c}", f"focus on {o}",
                       f"use thermometer on {o}", "activate stove", "deactivate stove", "mix bowl",
                       "read recipe", "look", "wait"])


LAB = EnvSpec(ToyLab, _lab_draw, _lab_oracle, _lab_failures, LAB_BANDS, _lab_relabel, _lab_lexicon,
              _lab_random_action)


# =========================================================================================== ToySQL
SQL_SCHEMAS = {"pets": ("name", "kind", "age", "city"), "books": ("title", "genre", "year", "city"),
               "staff": ("name", "dept", "salary", "city"), "cars": ("model", "color", "year", "city")}
SQL_WORDS = {  # value pools; 12 rows are drawn fresh for every task (text and numbers distinct per table)
    "name": ("ann", "bob", "cid", "dan", "eve", "fay", "gus", "hal", "ivy", "jay", "kim", "lou", "max", "ned"),
    "title": ("dune", "emma", "hamlet", "odyssey", "rebecca", "walden", "ivanhoe", "lolita", "carrie", "heidi",
              "matilda", "dracula", "ulysses", "beloved"),
    "model": ("civic", "golf", "polo", "fiesta", "corolla", "mustang", "beetle", "panda", "clio", "focus",
              "accord", "camry", "yaris", "micra"),
    "kind": ("dog", "cat", "bird", "fish"), "genre": ("poetry", "drama", "science", "history"),
    "dept": ("sales", "legal", "design", "support"), "color": ("red", "blue", "black", "white"),
    "city": ("paris", "rome", "oslo", "lima")}
SQL_NUMBERS = {"age": (1, 15), "year": (1990, 2019), "salary": (30, 99)}
SQL_TEMPLATES = ("filter", "two", "atleast", "order", "topk", "count", "max", "group")
SQL_HELD_OUT = {("topk", "books"), ("max", "staff"), ("order", "pets")}   # plus the whole cars schema
SQL_ROWS_SHOWN, SQL_OBS_TOKENS, SQL_ROW_CAP = 6, 18, 200
SQL_FUNCTIONS = {"count", "max", "min", "sum", "avg", "abs", "round", "lower", "upper", "length", "like"}
# ^ nothing that allocates (randomblob, zeroblob, printf, group_concat) or touches files (load_extension)
SQL_ERRORS = (("no such column", "error: no such column"), ("no such table", "error: no such table"),
              ("no such function", "error: no such function"), ("not authorized", "error: not allowed"),
              ("interrupted", "error: query too slow"), ("one statement", "error: one statement at a time"),
              ("syntax error", "error: syntax error"), ("incomplete input", "error: syntax error"),
              ("unrecognized token", "error: syntax error"))
def _sql_db(schema: str, table: str, rows: list) -> sqlite3.Connection:
    """A fresh in-memory database holding `rows` of `schema` in a table named `table`, that then accepts only
    reads of that table and a few harmless functions."""
    conn = sqlite3.connect(":memory:")
    cols = SQL_SCHEMAS[schema]
    conn.execute(f"create table {table} ({', '.join(cols)})")
    conn.executemany(f"insert into {table} values (?, ?, ?, ?)", rows)

    def authorize(action, arg1, arg2, db, source):
        # no writes, ATTACH, PRAGMA or recursive CTEs: a prepared statement may only select and read this table
        ok = action == sqlite3.SQLITE_SELECT or (action == sqlite3.SQLITE_READ and arg1 == table) or \
            (action == sqlite3.SQLITE_FUNCTION and arg2 in SQL_FUNCTIONS)
        return sqlite3.SQLITE_OK if ok else sqlite3.SQLITE_DENY
    conn.set_authorizer(authorize)
    conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 10000)  # no string or blob may grow past 10k bytes
    return conn


def _sql_run(conn, sql: str):
    """(rows, None) or (None, fixed error message). A runaway query is interrupted after ~200k VM steps."""
    budget = [200]
    conn.set_progress_handler(lambda: (budget.__setitem__(0, budget[0] - 1) or budget[0] < 0), 1000)
    try:
        cur = conn.execute(sql)
        rows = cur.fetchmany(SQL_ROW_CAP + 1)         # a cross join never materialises millions of rows
        cur.close()
    except (sqlite3.Error, sqlite3.Warning, ValueError, OverflowError, MemoryError) as e:
        return None, next((out for key, out in SQL_ERRORS if key in str(e).lower()), "error: bad query")
    finally:
        conn.set_progress_handler(None, 0)
    if len(rows) > SQL_ROW_CAP:
        return None, "error: too many rows"
    return [tuple(round(v, 4) if isinstance(v, float) else v for v in r) for r in rows], None


def _sql_table_name(rng) -> str:
    """A fresh table name per episode: a letter and two digits (`k07`)."""
    return rng.choice(string.ascii_lowercase) + str(rng.randrange(100)).zfill(2)


def _sql_draw(rng, unseen: bool) -> tuple:
    """12 fresh rows (text and numbers distinct) and one question, the first observation. Unseen: half cars, half
    held-out pairs."""
    if unseen and rng.random() < 0.5:
        table, template = "cars", rng.choice(SQL_TEMPLATES)
    else:
        table, template = rng.choice([p for p in itertools.product(("pets", "books", "staff"), SQL_TEMPLATES)
                                      if (p[::-1] in SQL_HELD_OUT) == unseen])
    text, cat, num, _ = SQL_SCHEMAS[table]
    lo, hi = SQL_NUMBERS[num]
    rows = [list(r) for r in zip(rng.sample(SQL_WORDS[text], 12), [rng.choice(SQL_WORDS[cat]) for _ in range(12)],
                                 rng.sample(range(lo, hi + 1), 12), [rng.choice(SQL_WORDS["city"]) for _ in range(12)])]
    name = _sql_table_name(rng)                        # read it off show tables
    question, gold, params = _sql_question(rng, template, table, name, rows)
    slots = {"table": table, "name": name, "template": template, "question": question, "gold": gold, "params": params,
            "rows": rows, "unseen": ("schema" if table == "cars" else "template") if unseen else None}
    return slots, question


def _sql_question(rng, template: str, schema: str, table: str, rows: list):
    """(question, gold SQL, params) for a template, with its constants drawn from the rows."""
    text, cat, num, _ = SQL_SCHEMAS[schema]
    v, c = rng.choice(rows)[1], rng.choice(rows)[3]
    if template == "two":                              # the most frequent pair: dropping a condition keeps most rows
        pairs = Counter((r[1], r[3]) for r in rows)
        v, c = rng.choice(sorted(p for p in pairs if pairs[p] == max(pairs.values())))
    k = rng.choice((2, 3, 4))
    x = sorted((r[2] for r in rows), reverse=True)[rng.choice((2, 3, 4))]  # 3 to 5 rows are at least x
    q, sql = {
        "filter": (f"list the {text} where {cat} is {v}.", f"select {text} from {table} where {cat} = '{v}'"),
        "two": (f"list the {text} where {cat} is {v} and city is {c}.",
                f"select {text} from {table} where {cat} = '{v}' and city = '{c}'"),
        "atleast": (f"list the {text} where {num} is at least {x}.", f"select {text} from {table} where {num} >= {x}"),
        "order": (f"list the {text} where city is {c}, from lowest to highest {num}.",
                  f"select {text} from {table} where city = '{c}' order by {num}"),
        "topk": (f"list the {text} of the {k} rows with the highest {num}.",
                 f"select {text} from {table} order by {num} desc limit {k}"),
        "count": (f"how many rows have {cat} {v}?", f"select count(*) from {table} where {cat} = '{v}'"),
        "max": (f"what is the highest {num} where city is {c}?", f"select max({num}) from {table} where city = '{c}'"),
        "group": (f"how many rows are there for each {cat}?", f"select {cat}, count(*) from {table} group by {cat}"),
    }[template]
    return q, sql, {"v": v, "c": c, "k": k, "x": x}


class ToySQL(_Env):
    """InterCode-SQL mirror: answer a question about a 12-row sqlite table the agent has not seen. 10-step cap.

    Actions: execute[<sql>] (read-only; `show tables` and `desc <table>` are emulated) and submit, which
    scores the last result: multiset IoU with the gold result, times the clamped Kendall correlation when the
    gold query orders. An error, no result or a timeout scores 0.
    """
    max_steps = 10

    def reset(self, task):
        self.s = task["slots"]
        self.done, self.end, self.t, self.last = False, None, 0, None
        if getattr(self, "conn", None) is not None:
            self.conn.close()
        self.conn = _sql_db(self.s["table"], self.s["name"], self.s["rows"])
        self.gold = _sql_run(self.conn, self.s["gold"])[0]
        return self.s["question"]

    def _act(self, a):
        schema, table = self.s["table"], self.s["name"]
        if a == "submit":
            reward, scores = sql_reward(self.gold, self.last, self.s["template"] in ("order", "topk"))
            return "submitted.", True, ("success" if reward == 1.0 else "wrong"), reward, scores
        m = re.fullmatch(r"execute\[(.+)\]", a or "")
        if not m:
            return _NOPE
        sql = m[1].strip().rstrip(";").strip()
        desc = re.fullmatch(r"(desc|describe) (\w+)", sql)
        if sql == "show tables":
            self.last, obs = [(table,)], table
        elif desc:
            self.last = [(c,) for c in SQL_SCHEMAS[schema]] if desc[2] == table else None
            obs = " ".join(SQL_SCHEMAS[schema]) if desc[2] == table else "error: no such table"
        else:
            self.last, error = _sql_run(self.conn, sql)
            obs = error or self._show(self.last)
        return obs, True, None, 0.0, {}

    def _why(self, a: str) -> str:
        verb = re.match(r"[a-z]*", a)[0]
        if verb in ("select", "show", "desc", "describe", "with"):
            return f"a query goes inside execute[...]: execute[{a}]"
        return _unparsed(a, ("execute", "submit"), "execute[<sql>] or submit")

    def undirected(self, rng, messages) -> str:
        """An undirected action (pretraining's policy): SQL over what the transcript has shown, uniform over the
        templates it makes well-formed: show tables; once the table's name was shown, desc and select *; once its
        columns were shown, a projection, a filter on a shown value, a count, an order, a group, a max; submit."""
        asked = dict(zip(messages[1::2], messages[2::2]))
        table = asked.get("execute[show tables]")
        cols = asked.get(f"execute[desc {table}]", "").split() if table else []
        values = [w for m in messages[0::2] for w in re.findall(r"[a-z]+|\d+", m) if w not in cols and w != table]
        choices = ["execute[show tables]"]
        if table:
            choices += [f"execute[desc {table}]", f"execute[select * from {table}]"]
        if table and cols:
            c, d, v = rng.choice(cols), rng.choice(cols), rng.choice(values or ["1"])
            value = v if v.isdigit() else f"'{v}'"
            choices += [f"execute[select {c} from {table}]", f"execute[select {c} from {table} where {d} = {value}]",
                        f"execute[select count(*) from {table} where {d} > {rng.randint(0, 99)}]",
                        f"execute[select {c} from {table} order by {d} desc limit {rng.randint(1, 5)}]",
                        f"execute[select {c}, count(*) from {table} group by {c}]",
                        f"execute[select max({c}) from {table}]"]
        return _undirected_pick(rng, choices, ["submit"])

    def _show(self, rows) -> str:
        if not rows:
            return "no rows."
        known = _lexicon_words("sql")
        cell = lambda v: "null" if v is None else re.sub(r"[a-z]+", lambda w: w[0] if w[0] in known else "?",
                                                          re.sub(r"[^a-z0-9.\- ]", "?", str(v).lower()))
        lines = [" ".join(" ".join(cell(v).split()) or "?" for v in r) for r in rows[:SQL_ROWS_SHOWN]]
        return _clip("\n".join(lines + (["more."] if len(rows) > SQL_ROWS_SHOWN else [])), SQL_OBS_TOKENS)


def sql_reward(gold: list, got, ordered: bool) -> tuple:
    """InterCode's score: multiset IoU of the rows, times the Kendall rank correlation (clamped at 0) of the
    rows both share, the latter only when the gold query orders. Returns (reward, parts)."""
    if got is None:
        return 0.0, {"iou": 0.0, "order": 0.0}
    g, a = Counter(gold), Counter(got)
    union = sum((g | a).values())
    iou = sum((g & a).values()) / union if union else 1.0
    position = {}
    for i, row in enumerate(got):
        position.setdefault(row, i)
    ranks = [position[row] for row in dict.fromkeys(gold) if row in position]
    pairs = [(x, y) for i, x in enumerate(ranks) for y in ranks[i + 1:]]
    tau = sum(1 if x < y else -1 for x, y in pairs) / len(pairs) if pairs else 1.0
    order = max(0.0, tau) if ordered else 1.0
    return round(iou * order, 4), {"iou": round(iou, 4), "order": round(order, 4)}


def _sql_oracle(task) -> list:
    """Look up the table (the question does not name it), run the query the question describes, submit."""
    return ["execute[show tables]", f"execute[{task['slots']['gold']}]", "submit"]


SQL_BANDS = {  # scripted near-miss -> (low, high, what it does); a task whose near-misses leave these is redrawn
    "limit_k_plus_1": (0.66, 0.8, "top-k with limit k+1"),
    "gt_for_ge": (0.66, 0.8, "> instead of >="),
    "drop_category": (0.25, 0.8, "two filters, category condition dropped"),
    "drop_city": (0.25, 0.8, "two filters, city condition dropped"),
    "no_where": (0.15, 0.42, "a list without its where clause"),
    "unfiltered": (0.0, 0.0, "count or max without its where clause"),
    "wrong_column": (0.0, 0.0, "selects the category column"),
    "reversed": (0.0, 0.0, "ordered the wrong way"),
    "wrong_group": (0.0, 0.0, "groups by city"),
    "error": (0.0, 0.0, "skips show tables: no such table"),
    "no_submit": (0.0, 0.0, "right query, never submits (timeout)")}


def _sql_failure_sql(slots) -> dict:
    """The usual near-miss queries of this task's template (what a nearly right agent would submit)."""
    schema, table, template, p, gold = slots["table"], slots["name"], slots["template"], slots["params"], slots["gold"]
    text, cat, num, _ = SQL_SCHEMAS[schema]
    # skipped show tables and guessed the table from the question's words: no such table
    out = {"error": gold.replace(f" from {table}", f" from {schema}")}
    if template in ("filter", "two", "atleast", "order", "topk"):
        out["wrong_column"] = gold.replace(f"select {text}", f"select {cat}", 1)
    if template in ("filter", "atleast", "order"):
        out["no_where"] = gold.split(" where ")[0] + (f" order by {num}" if template == "order" else "")
    if template == "two":
        out["drop_city"] = gold.replace(f" and city = '{p['c']}'", "")
        out["drop_category"] = gold.replace(f"{cat} = '{p['v']}' and ", "")
    if template == "atleast":
        out["gt_for_ge"] = gold.replace(">=", ">")
    if template in ("order", "topk"):
        out["reversed"] = gold.replace(" desc", "") if template == "topk" else gold + " desc"
    if template == "topk":
        out["limit_k_plus_1"] = gold.replace(f"limit {p['k']}", f"limit {p['k'] + 1}")
    if template in ("count", "max"):
        out["unfiltered"] = gold.split(" where ")[0]
    if template == "group":
        out["wrong_group"] = gold.replace(f"{cat}, count(*)", "city, count(*)").replace(f"by {cat}", "by city")
    return out


def _sql_failures(task) -> dict:
    out = {name: ["execute[show tables]", f"execute[{sql}]", "submit"]
           for name, sql in _sql_failure_sql(task["slots"]).items()}
    return dict(out, no_submit=_sql_oracle(task)[:2])


def _sql_bands_ok(slots) -> bool:
    conn = _sql_db(slots["table"], slots["name"], slots["rows"])
    gold, _ = _sql_run(conn, slots["gold"])
    ok = bool(gold) and gold != [(0,)] and gold != [(None,)]
    for name, sql in _sql_failure_sql(slots).items():
        lo, hi, _ = SQL_BANDS[name]
        r = sql_reward(gold, _sql_run(conn, sql)[0], slots["template"] in ("order", "topk"))[0] if ok else 0
        ok = ok and lo <= r <= hi
    conn.close()
    return ok


def _sql_relabel(s, rng) -> dict:
    """Another table name and another row order."""
    name = s["name"]
    while name == s["name"]:
        name = _sql_table_name(rng)
    s.update(name=name, gold=s["gold"].replace(f" from {s['name']}", f" from {name}"),
             rows=rng.sample(s["rows"], len(s["rows"])))
    return s


def _sql_lexicon() -> list:
    return ([f"{t} {' '.join(cols)}" for t, cols in SQL_SCHEMAS.items()] +
            [" ".join(words) for words in SQL_WORDS.values()] +
            ["list the name where kind is dog and city is rome.", "list the name where age is at least 7.",
             "list the name where city is rome, from lowest to highest age.",
             "list the name of the 3 rows with the highest age.", "how many rows have kind dog?",
             "what is the highest age where city is rome?", "how many rows are there for each kind?",
             "execute[select name, count(*) from pets where age >= 3 and age > 2 or age < 1 order by age desc limit 3]",
             "execute[show tables] execute[desc pets] execute[describe pets] submit submitted.",
             "select distinct min max sum avg abs round lower upper length like not null in is asc as group",
             "no rows. more. null - ? ; * % _ !=", INVALID, "0 1 2 3 4 5 6 7 8 9", " ".join(string.ascii_lowercase)] +
            sorted({msg for _, msg in SQL_ERRORS} | {"error: bad query", "error: too many rows"}))


def _sql_random_action(rng) -> str:
    table = rng.choice(list(SQL_SCHEMAS) + [_sql_table_name(rng)])
    cols = SQL_SCHEMAS[rng.choice(list(SQL_SCHEMAS))]
    col, val = rng.choice(cols), rng.choice(SQL_WORDS[rng.choice(list(SQL_WORDS))])
    return rng.choice([f"execute[select {col} from {table}]",
                       f"execute[select {col} from {table} where {rng.choice(cols)} = '{val}']",
                       f"execute[select count(*) from {table} where {col} > {rng.randint(0, 99)}]",
                       f"execute[select {col} from {table} order by {rng.choice(cols)} desc limit {rng.randint(1, 5)}]",
                       "execute[show tables]", f"execute[desc {table}]", "submit"])


SQL = EnvSpec(ToySQL, _sql_draw, _sql_oracle, _sql_failures, SQL_BANDS, _sql_relabel, _sql_lexicon,
              _sql_random_action, keep=_sql_bands_ok)


# =========================================================================================== public API
ENVS = {"shop": SHOP, "lab": LAB, "sql": SQL}
FAILURE_BANDS = {name: spec.bands for name, spec in ENVS.items()}   # tests check the bands, --bands measures them


def _spec(name: str) -> EnvSpec:
    if name not in ENVS:
        raise ValueError(f"unknown environment {name!r}; choose one of {ENV_NAMES}")
    return ENVS[name]


def make_env(name: str, **options):
    """A fresh environment: shop | lab | sql. Options: max_steps; lab also reward ("best" | "final") and
    optional_weight (weight of the optional subgoals; default 1/(n+1))."""
    return _spec(name).env(**options)


def make_tasks(env_name: str, split: str, n: int, seed: int) -> list:
    """n tasks of one split, deterministic from the seed. Seen tasks go to train, valid_seen or test_seen by a
    hash of their first observation; valid_unseen and test_unseen tasks all contain a held-out composition."""
    if env_name not in ENV_NAMES or split not in SPLITS:
        raise ValueError(f"make_tasks needs env in {ENV_NAMES} and split in {SPLITS}, got {env_name!r}, {split!r}")
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"make_tasks needs a count n >= 0, got {n!r}")
    spec, rng = ENVS[env_name], random.Random(_digest("tasks", env_name, split, seed))
    unseen, slots = split.endswith("_unseen"), []
    bucket = split.replace("_unseen", "_seen")        # unseen tasks take first observations of their bucket too
    while len(slots) < n:                              # draw worlds, keep those of this split
        s, first = spec.draw(random.Random(rng.getrandbits(64)), unseen)
        # unseen tasks also take test first observations only (a cars question can read like a books one);
        # the split check is cheap, keep (sql: gold non-empty, near-misses in band, in sqlite) runs after it
        if _seen_split(first) == bucket and spec.keep(s):
            slots.append(s)
    return [{"env": env_name, "split": split, "id": f"{env_name}-{split}-{i:04d}", "seed": seed, "slots": s}
            for i, s in enumerate(slots[:n])]


def oracle(task) -> dict:
    """The expert trajectory (reward 1.0): it acts only on what the transcript shows."""
    return replay(task, ENVS[task["env"]].oracle(task))


def scripted_failures(task) -> dict:
    """Failure-mode name -> actions that reproduce that near-miss on this task (only the modes it allows)."""
    return ENVS[task["env"]].failures(task)


def replay(task, actions, **options) -> dict:
    """Run a list of actions; a trajectory dict (docs/design.md). It stops when the episode ends; if the
    actions run out first, the episode is closed as a timeout (the score the step cap would give)."""
    env = make_env(task["env"], **options)
    messages, n_invalid, reward, end = [env.reset(task)], 0, 0.0, "timeout"
    for action in actions:
        obs, reward, done, info = env.step(action)
        messages += [action if isinstance(action, str) else repr(action), obs]
        n_invalid += not info["valid"]
        if done:
            end = info["end"]
            break
    else:
        reward = env.timeout_reward()
    return {"task": task, "messages": messages, "reward": reward, "success": reward == 1.0, "end": end,
            "n_invalid": n_invalid}


def undirected_episode(task, rng: random.Random) -> dict:
    """One episode of the undirected policy (each env's `undirected`: at every step a random action among those
    the current observation makes well-formed, wanting nothing): a trajectory dict. Pretraining's corpus."""
    env = make_env(task["env"])
    messages, n_invalid, done, info, reward = [env.reset(task)], 0, False, {}, 0.0
    while not done:
        action = env.undirected(rng, messages)
        obs, reward, done, info = env.step(action)
        messages += [action, obs]
        n_invalid += not info["valid"]
    return {"task": task, "messages": messages, "reward": reward, "success": info["success"], "end": info["end"],
            "n_invalid": n_invalid}


def relabel(task, seed: int) -> dict:
    """The same task in a world renamed and reordered without changing its meaning (each env's _relabel says
    how). An agent that reads the observations scores the same on both; one that recalls names from training
    does not (the reading benchmark: python bench.py --reading RUN_DIR)."""
    rng, s = random.Random(_digest("relabel", task["id"], task["seed"], seed)), json.loads(json.dumps(task["slots"]))
    return dict(task, id=task["id"] + "-relabeled", slots=ENVS[task["env"]].relabel(s, rng))


def lexicon(env_name: str) -> list:
    """Texts that together contain every word the environment can print or accept."""
    return _spec(env_name).lexicon()


@functools.lru_cache(maxsize=None)
def _lexicon_words(env_name: str) -> frozenset:
    return frozenset(re.findall(r"[a-z]+", " ".join(lexicon(env_name))))


def random_action(env_name: str, rng: random.Random) -> str:
    """A plausible random action: a template of the environment filled with its own words."""
    return _spec(env_name).random_action(rng)


# =========================================================================================== command line
def _bands(n: int) -> str:
    """The markdown reward-band table: every scripted near-miss, replayed on n train tasks per environment."""
    lines = ["| env | failure mode | what it does | band | tasks | mean | min | max |", "|---" * 8 + "|"]
    for env_name in ENV_NAMES:
        rewards = {name: [] for name in ["oracle", *FAILURE_BANDS[env_name], "random agent"]}
        for task in make_tasks(env_name, "train", n, 0):
            rewards["oracle"].append(oracle(task)["reward"])
            for name, acts in scripted_failures(task).items():
                rewards[name].append(replay(task, acts)["reward"])
            rng = random.Random(_digest("random", task["id"]))
            rewards["random agent"].append(replay(task, [random_action(env_name, rng) for _ in range(20)])["reward"])
        for name, rs in ((k, v) for k, v in rewards.items() if v):   # modes no task allowed are left out
            lo, hi, what = FAILURE_BANDS[env_name].get(name, (None, None, "20 random plausible actions" if
                                                              name != "oracle" else "expert, acts on the transcript"))
            band = "" if lo is None else f"{lo:.3g}" if lo == hi else f"{lo:.3g}-{hi:.3g}"
            lines.append(f"| {env_name} | {name} | {what} | {band} | {len(rs)} | {sum(rs) / len(rs):.3f} | "
                         f"{min(rs):.3f} | {max(rs):.3f} |")
    return "\n".join(lines)


PLAY_HELP = {"shop": "search[words], click[id | option value | next > | < prev | back | buy now]",
             "lab": "look, go to ROOM, take X, put X in Y, activate stove, deactivate stove, mix bowl, "
                    "read recipe, use thermometer on X, focus on X, wait",
             "sql": "execute[select ...], execute[show tables], execute[desc TABLE], submit"}


def _reward_parts(env, reward: float, info: dict) -> str:
    """The end-of-episode reward with the parts that make it (info["scores"]; the lab's also from its state)."""
    parts, head = info["scores"], f"reward {reward}"
    if isinstance(env, ToyShop):   # WebShop: r_type * (attributes + options + price) / their number
        if not parts:
            return f"{head}: nothing was bought, so there are no parts to score"
        goal = env.goal
        return (f"{head} = type {parts['r_type']:g} x (attributes {parts['attrs']}/{len(goal['attrs'])} + options "
                f"{parts['options']}/{len(goal['options'])} + price {parts['price']}/1) / {parts['of']}")
    if isinstance(env, ToyLab):    # ScienceWorld: ordered subgoals + a weighted optional one, best score kept
        n, m = len(env.required), len(env.extra)
        w = 1 / (n + 1) if env.optional_weight is None else env.optional_weight
        return (f"{head} = subgoals {env.k}/{n} + {w:.3g} x optional {len(env.optional)}/{m} (capped at 1; the "
                f"best score reached counts)")
    if not parts:                  # ToySQL: IoU of the rows x their rank agreement when the question orders
        return f"{head}: never submitted, so there are no parts to score"
    if env.last is None:
        return f"{head}: the last query gave no result (an error, or none ran), so nothing matched"
    return f"{head} = rows in common (IoU) {parts['iou']:g} x order {parts['order']:g}"


def _play(env_name: str, task) -> None:
    """Type actions (or pipe them in: then each is echoed after its prompt, so the output reads as typed)."""
    env, piped = make_env(env_name), not (sys.stdin and sys.stdin.isatty())
    print(f"(actions: {PLAY_HELP[env_name]}; Ctrl-D quits.\n A refused action answers 'nothing happens.'; "
          f"the (why: ...) line under it is for you: the agent never sees it.)")
    print(env.reset(task))
    while True:
        prompt = f"step {env.t + 1}/{env.max_steps} > "
        try:
            action = input("" if piped else prompt)
        except (EOFError, KeyboardInterrupt):
            print("bye." if piped else "\nbye.")
            return
        if piped:
            print(prompt + action)
        obs, reward, done, info = env.step(action)
        print(obs)
        if not info["valid"]:
            print(f"(why: {info['why']})")
        if done:
            print(f"[episode over: {info['end']}]")
            print(_reward_parts(env, reward, info))
            return


NO_NEAR_MISS = "no scripted near-miss with reward above 0 on this task"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="Toy text environments (shop, lab, sql): show oracle transcripts, "
                                "play one yourself, or print the reward-band table.")
    p.add_argument("env", nargs="?", choices=ENV_NAMES, help="which environment")
    p.add_argument("--show", type=int, default=0, metavar="N", help="print N oracle transcripts with rewards")
    p.add_argument("--near-miss", action="store_true", help="--show: also each task's best scripted near-miss "
                   "(a hard negative, 0 < reward < 1), or a line saying the task has none")
    p.add_argument("--play", action="store_true", help="type actions yourself (Ctrl-D or Ctrl-C ends)")
    p.add_argument("--split", choices=SPLITS, default="train", help="which split the tasks come from")
    p.add_argument("--seed", type=int, default=0, help="task seed")
    p.add_argument("--task", type=int, default=0, help="--play: index of the task within the split")
    p.add_argument("--bands", action="store_true", help="print the reward-band markdown table (all envs)")
    p.add_argument("--n", type=int, default=100, help="--bands: tasks per environment")
    args = p.parse_args(argv)
    if args.bands:
        print(_bands(args.n))
    elif args.env and args.play:
        _play(args.env, make_tasks(args.env, args.split, args.task + 1, args.seed)[args.task])
    elif args.env and args.show > 0:
        for task in make_tasks(args.env, args.split, args.show, args.seed):
            trajs = [("oracle", oracle(task))]
            if args.near_miss:  # the scripted failure closest to success: what a failure agent should learn to make
                misses = [(k, replay(task, a)) for k, a in scripted_failures(task).items()]
                misses = [(k, t) for k, t in misses if 0 < t["reward"] < 1]   # a reward-0 failure is no near miss
                trajs += [max(misses, key=lambda kt: kt[1]["reward"])] if misses else []
            for kind, traj in trajs:
                print(f"--- {task['id']}  {kind}  reward {traj['reward']}  end {traj['end']}")
                print("\n".join(("> " + m) if i % 2 else m for i, m in enumerate(traj["messages"])))
            if args.near_miss and len(trajs) == 1:
                print(f"--- {task['id']}  {NO_NEAR_MISS}")
    else:
        p.print_help()


if __name__ == "__main__":
    main()
