"""Answers that need more than one block: helpers written before the solution, long fences, fence lines inside the
code, and code in prose without fences."""

import textwrap

import pytest

from ssd_jax.data.problem_files import load_problem_file
from ssd_jax.data.problems import Problem, TestCase
from ssd_jax.evals.code_extraction import extract_code
from ssd_jax.evals.evaluate import evaluate
from ssd_jax.evals.sandbox import SandboxLimits

F = "```"
IS_PRIME = (
  "def is_prime(n):\n    if n < 2:\n        return False\n    return all(n % d for d in range(2, int(n**0.5) + 1))\n"
)
IS_PRIME_DRAFT = "def is_prime(n):\n    return n > 1\n"
COUNT = "def count_primes(n):\n    return sum(1 for k in range(n) if is_prime(k))\n"
COUNT_WRONG = "def count_primes(n):\n    return sum(1 for k in range(n + 1) if is_prime(k))\n"  # counts n too
IS_PRIME_ISQRT = IS_PRIME.replace("int(n**0.5)", "math.isqrt(n)")
NEXT_PRIME = "def next_prime(n):\n    n += 1\n    while not is_prime(n):\n        n += 1\n    return n\n"
PRIME_TOOLS = f"import math\n\nMOD = 10**9 + 7\n\n\n{IS_PRIME_ISQRT}\n\n{NEXT_PRIME}\n\nprint(next_prime(10))  # 11\nassert is_prime(7)\n"
NTH = "def nth_prime_mod(k):\n    p = 1\n    for _ in range(k):\n        p = next_prime(p)\n    return p % MOD\n"
STATS = "def stats(nums):\n    return sum(nums), sum(nums) / len(nums)\n"
STDIN_MAIN = (
  "import sys\n\nn, *a = map(int, sys.stdin.read().split())\ntotal, mean = stats(a)\nprint(total)\nprint(mean)\n"
)
STDIN = "import sys\n\nn, *a = map(int, sys.stdin.read().split())\nprint(sum(a))\nprint(sum(a) / n)\n"
ADD = "def add_one(x):\n    return x + 1\n"
# A docstring whose example is fenced: its fence lines close a three-backtick block early.
ADD_DOC = (
  "def add_one(x):\n"
  '    """Returns x + 1.\n'
  "\n"
  "    Example:\n"
  "    ```python\n"
  "    >>> add_one(1)\n"
  "    2\n"
  "    ```\n"
  '    """\n'
  "    return x + 1\n"
)
ADD_DOC_TILDES = ADD_DOC.replace("```", "~~~")
# Three fenced examples: the block is read on through three closing fences, past the blocks the examples open.
ADD_DOC_EXAMPLES = ADD_DOC.replace(
  "    ```\n",
  "    ```\n    ```python\n    >>> add_one(-1)\n    0\n    ```\n    ```python\n    >>> add_one(0)\n    1\n    ```\n",
)
CYCLIC_STARTER = (
  "def encode(s: str) -> str:\n"
  '    """Rotates s left by one."""\n'
  "    return s[1:] + s[:1]\n"
  "\n"
  "\n"
  "def decode(s: str) -> str:\n"
  '    """Inverts encode."""\n'
)
TOTAL_STARTER = "class Solution:\n    def total(self) -> int:\n        "
ADD_STARTER = 'def add_one(x):\n    """Returns x + 1."""\n'
WAYS = (
  "import sys; sys.setrecursionlimit(10000)\n"
  "from functools import lru_cache\n"
  "\n"
  "\n"
  "@lru_cache(maxsize=None)\n"
  "def ways(n):\n"
  "    return 1 if n < 2 else ways(n - 1) + ways(n - 2)\n"
)
CLIMB = "def climb(n):\n    return ways(n)\n"


def helpers(*definitions, answer):
  """The code graded: the carried definitions, as written, then the answer."""
  return "\n\n".join(d.rstrip("\n") for d in definitions) + "\n\n\n" + answer


NOT_PRIME = "NOT_PRIME = set(range(2))"
IS_PRIME_SET = "def is_prime(n):\n    if n in NOT_PRIME:\n        return False\n    return all(n % d for d in range(2, int(n**0.5) + 1))\n"
ADD_READS_DATA = "def add_one(x):\n    return x + 1 + len(DATA)\n"
ADD_READS_STEP = "def add_one(x):\n    return x + STEP\n"
ADD_READS_ORDER = "def add_one(x):\n    return x + 1 + 0 * len(ORDER)\n"
# (id, problem, completion, code graded, whether it passes in the grader).
HELPERS = [
  (
    "helper_block",
    "primes",
    f"First a primality test:\n\n{F}python\n{IS_PRIME}{F}\n\nThen count with it:\n\n{F}python\n{COUNT}{F}\n",
    helpers(IS_PRIME, answer=COUNT),
    True,
  ),
  # What the helpers read comes too, in order; the print and assert between them do not.
  (
    "helpers_import_constant_transitive",
    "nth",
    f"Tools:\n{F}python\n{PRIME_TOOLS}{F}\n\nThe answer:\n{F}python\n{NTH}{F}\n",
    helpers("import math", "MOD = 10**9 + 7", IS_PRIME_ISQRT, NEXT_PRIME, answer=NTH),
    True,
  ),
  (
    "stdin_helper",
    "st",
    f"{F}python\n{STATS}{F}\n\nThe program:\n{F}python\n{STDIN_MAIN}{F}\n",
    helpers(STATS, answer=STDIN_MAIN),
    True,
  ),
  # The last definition of a helper is the one carried; a block that does not parse gives none.
  (
    "latest_helper_wins",
    "primes",
    f"{F}python\n{IS_PRIME_DRAFT}{F}\nThat counts 9 as prime. Sketch:\n{F}python\ndef is_prime(n)\n    ...\n{F}\n"
    f"Fixed:\n{F}python\n{IS_PRIME}{F}\n{F}python\n{COUNT}{F}\n",
    helpers(IS_PRIME, answer=COUNT),
    True,
  ),
  # A decorated helper comes with its decorator; a call joined by `;` to a needed import would not.
  (
    "decorated_helper",
    "climb",
    f"Memoized:\n{F}python\n{WAYS}{F}\nSo:\n{F}python\n{CLIMB}{F}\n",
    helpers("from functools import lru_cache", WAYS[WAYS.index("@") :], answer=CLIMB),
    True,
  ),
  # A constant built by builtins comes too.
  (
    "constant_built_by_builtins",
    "primes",
    f"{F}python\n{NOT_PRIME}\n\n{IS_PRIME_SET}{F}\nSo:\n{F}python\n{COUNT}{F}\n",
    helpers(NOT_PRIME, IS_PRIME_SET, answer=COUNT),
    True,
  ),
]
HELPER_GUARDS = [
  # A usage example, test or `__main__` block before the answer never runs.
  (
    "usage_not_carried",
    "primes",
    f"{F}python\n{IS_PRIME}\nif __name__ == '__main__':\n    print([k for k in range(20) if is_prime(k)])\n{F}\n"
    f"Check:\n{F}python\nassert is_prime(7)\nprint(count_primes(10))\n{F}\nSo:\n{F}python\n{COUNT}{F}\n",
    helpers(IS_PRIME, answer=COUNT),
    True,
  ),
  # A wrong answer stays wrong: the right entry point before it is not carried (only the helper it calls).
  (
    "entry_point_not_carried",
    "primes",
    f"{F}python\n{IS_PRIME}\n\n{COUNT}{F}\nShorter:\n{F}python\n{COUNT_WRONG}{F}\n",
    helpers(IS_PRIME, answer=COUNT_WRONG),
    False,
  ),
  # A restated starter function is not carried over the problem's own: `decode` re-encodes, which only the
  # model's (wrong) `encode` would invert.
  (
    "starter_name_not_carried",
    "cyclic",
    f"The encoder:\n{F}python\ndef encode(s: str) -> str:\n    return s[-1:] + s[:-1]\n{F}\n"
    f"So:\n{F}python\ndef decode(s: str) -> str:\n    return encode(s)\n{F}\n",
    "def decode(s: str) -> str:\n    return encode(s)\n",
    False,
  ),
  ("needs_nothing", "add", f"{F}python\n{IS_PRIME}{F}\n{F}python\n{ADD}{F}\n", ADD, True),
  # A constant that reads input is not carried (the sandbox's stdin is empty: `DATA` would be [] and pass), nor
  # one built from a value the usage code read (it would fail before the answer).
  (
    "stdin_constant_not_carried",
    "add",
    f"{F}python\nimport sys\nDATA = list(sys.stdin)\n{F}\n{F}python\n{ADD_READS_DATA}{F}\n",
    ADD_READS_DATA,
    False,
  ),
  # Nor one that hands a function to a builtin (it would run the completion's code before the answer), nor one
  # reading standard input under another name.
  (
    "key_function_constant_not_carried",
    "add",
    f"{F}python\ndef neg(x):\n    return -x\n\n\nORDER = sorted(range(3), key=neg)\n{F}\n{F}python\n{ADD_READS_ORDER}{F}\n",
    ADD_READS_ORDER,
    False,
  ),
  (
    "stdin_alias_constant_not_carried",
    "add",
    f"{F}python\nfrom sys import stdin as s\nDATA = list(s)\n{F}\n{F}python\n{ADD_READS_DATA}{F}\n",
    helpers("from sys import stdin as s", answer=ADD_READS_DATA),
    False,
  ),
  (
    "constant_from_input_not_carried",
    "add",
    f"{F}python\nx = int(input())\nSTEP = x - x + 1\n{F}\n{F}python\n{ADD_READS_STEP}{F}\n",
    ADD_READS_STEP,
    False,
  ),
]
FENCES = [
  ("four_backticks", "add", f"````python\n{ADD_DOC}````\n", ADD_DOC, True),
  ("four_tildes", "add", f"~~~~python\n{ADD_DOC_TILDES}~~~~\n", ADD_DOC_TILDES, True),
  ("longer_closing_fence", "add", f"{F}python\n{ADD}````\n\nDone.\n", ADD, True),
  # A fence at the end of a line of prose opens a block, as LiveCodeBench reads it.
  ("fence_opened_mid_line", "add", f"Here is the code: {F}python\n{ADD}{F}\n\nDone.\n", ADD, True),
  ("fence_opened_mid_line_indented", "add", f"  Code:{F}py\n{textwrap.indent(ADD, '  ')}  {F}\n", ADD, True),
  # Guards: a sentence that mentions a fence opens none, nor a fence ending prose without a tag.
  ("fence_mentioned_in_prose", "add", f"Wrap it in {F} fences.\n\n{F}python\n{ADD}{F}\n", ADD, True),
  ("prose_ending_in_a_bare_fence", "add", f"The answer goes between {F}\n{F}python\n{ADD}{F}\n", ADD, True),
  ("unfenced_code_then_prose_with_a_fence", "add", f"{ADD}\nDone {F}\n", ADD, True),
]
KEEP = "def keep(x):\n    return x > 0\n"
JOINED = "import fractions; LIMIT = 0\n\n\ndef sumPositive(self, nums):\n    return int(sum(fractions.Fraction(x) for x in nums if x > LIMIT))\n"
CLASS_CONSTANT = "LIMIT = 0\n\n\ndef sumPositive(self, nums):\n    return sum(x for x in nums if x > self.LIMIT)\n"
METHOD_USAGE = (
  "def sumPositive(self, nums):\n    return sum(x for x in nums if x > 0)\n\n\nprint(sumPositive(None, [1, -2, 3]))\n"
)
SUM_POSITIVE = "def sumPositive(self, nums):\n    return sum(x for x in nums if keep(x))\n"
# Joined to a constant written with a character of more than one byte, as the parser counts columns in bytes.
FILLED = 'SIGN = "≥"; LIMIT = []\nLIMIT.append(0)\n\n\ndef sumPositive(self, nums):\n    return sum(x for x in nums if x > LIMIT[0])\n'
# A constant derived from what top-level code fills is built again in the class, after that code: before the
# class it was built before the loop ran.
TOTAL = "xs = []\nfor i in range(5):\n    xs.append(i)\nTOTAL = sum(xs)\n\n\ndef total(self):\n    return self.TOTAL\n"
FRACTIONS = "import fractions\n\n\ndef sumPositive(self, nums):\n    return int(sum(fractions.Fraction(x) for x in nums if x > 0))\n"
# A method answer without its class goes under the starter's class line; its helpers and imports stay at the top
# level (inside the class a helper is no global name, and neither is an import).
METHODS = [
  (
    "method_with_earlier_helper",
    "sum_positive",
    f"{F}python\n{KEEP}{F}\n\nThe method:\n\n{F}python\n{SUM_POSITIVE}{F}\n",
    f"{KEEP}\n\n{SUM_POSITIVE}",
    True,
  ),
  ("method_with_its_import", "sum_positive", f"{F}python\n{FRACTIONS}{F}\n", FRACTIONS, True),
  # Definitions joined by `;` are read one by one; the whole answer stays in the class too, so `self.LIMIT` and
  # a usage line calling the method by name (as the class body runs it) still work.
  ("method_with_joined_imports", "sum_positive", f"{F}python\n{JOINED}{F}\n", JOINED, True),
  ("method_reading_a_class_constant", "sum_positive", f"{F}python\n{CLASS_CONSTANT}{F}\n", CLASS_CONSTANT, True),
  ("method_then_usage", "sum_positive", f"{F}python\n{METHOD_USAGE}{F}\n", METHOD_USAGE, True),
  # Top-level code that fills a constant (inside the class too) fills the one the methods read.
  ("method_reading_a_filled_constant", "sum_positive", f"{F}python\n{FILLED}{F}\n", FILLED, True),
  ("method_reading_a_derived_constant", "total", f"{F}python\n{TOTAL}{F}\n", TOTAL, True),
  (
    "method_with_static_helper",
    "sum_positive",
    f"{F}python\n@staticmethod\n{KEEP}\n{SUM_POSITIVE.replace('keep(x)', 'self.keep(x)')}{F}\n",
    f"@staticmethod\n{KEEP}\n{SUM_POSITIVE.replace('keep(x)', 'self.keep(x)')}",
    True,
  ),
]
DOCSTRING_FENCES = [
  ("docstring_fence", "add", f"{F}python\n{ADD_DOC}{F}\n\nThis adds one.\n", ADD_DOC, True),
  (
    "docstring_fence_then_usage",
    "add",
    f"{F}python\n{ADD_DOC}{F}\n\nUsage:\n{F}python\nprint(add_one(1))\n{F}\n",
    ADD_DOC,
    True,
  ),
  (
    "docstring_fence_wrong",
    "add",
    f"{F}python\n{ADD_DOC.replace('x + 1', 'x - 1')}{F}\n",
    ADD_DOC.replace("x + 1", "x - 1"),
    False,
  ),
  (
    "docstring_fences_of_three_examples",
    "add",
    f"{F}python\n{ADD_DOC_EXAMPLES}{F}\n\nUsage:\n{F}python\nprint(add_one(1))\n{F}\n",
    ADD_DOC_EXAMPLES,
    True,
  ),
  # A block that is broken itself stays broken: read on, it takes in the fences and prose after it.
  (
    "broken_block",
    "add",
    f"{F}python\ndef add_one(x)\n    return x + 1\n{F}\n\nUsage:\n{F}python\nprint(add_one(1))\n{F}\n",
    "print(add_one(1))\n",
    False,
  ),
]
PROSE = [
  ("prose_around_code", "add", f"Here is my solution:\n\n{ADD}\nThis runs in O(1).", ADD, True),
  ("prose_around_stdin", "st", f"Read all numbers at once.\n\n{STDIN}\nBoth lines print in O(N).\n", STDIN, True),
  (
    "prose_helper",
    "primes",
    f"A helper first:\n\n{IS_PRIME}\nThen the count:\n\n{COUNT}\nDone.",
    helpers(IS_PRIME, answer=COUNT),
    True,
  ),
  (
    "prose_draft_then_fix",
    "add",
    "My first try:\n\ndef add_one(x):\n    return x\n\nThat is wrong; fixed:\n\ndef add_one(x):\n    return x + 1\n\nOK.",
    ADD,
    True,
  ),
]
PROSE_GUARDS = [
  (
    "prose_wrong_answer",
    "add",
    "Here:\n\ndef add_one(x):\n    return x - 1\n\nDone.",
    "def add_one(x):\n    return x - 1\n",
    False,
  ),
  ("code_that_parses", "add", f"# add one\n{ADD}", f"# add one\n{ADD}", True),
  # A body-only answer under the starter, a helper after it, parses as a continuation: kept whole.
  (
    "continuation_with_helper",
    "add_body",
    "    return helper(x)\n\n\ndef helper(x):\n    return x + 1\n",
    "    return helper(x)\n\n\ndef helper(x):\n    return x + 1\n",
    True,
  ),
  ("prose_only", "add", "I cannot solve this.", "I cannot solve this.", False),
]
CASES = HELPERS + HELPER_GUARDS + FENCES + METHODS + DOCSTRING_FENCES + PROSE + PROSE_GUARDS


def functional(task_id, entry_point, checks, starter_code=""):
  return Problem(task_id, task_id, starter_code, entry_point, (TestCase("t", code=checks),))


@pytest.fixture(scope="module")
def problems():
  livecodebench = {p.task_id: p for p in load_problem_file("tests/fixtures/livecodebench_mini.jsonl")}
  return {
    "primes": functional("primes", "count_primes", "assert count_primes(10) == 4\nassert count_primes(7) == 3\n"),
    "nth": functional("nth", "nth_prime_mod", "assert nth_prime_mod(1) == 2\nassert nth_prime_mod(5) == 11\n"),
    "climb": functional("climb", "climb", "assert climb(5) == 8\n"),
    "add": functional("add", "add_one", "assert add_one(1) == 2\nassert add_one(-1) == 0\n"),
    "add_body": functional("add_body", "add_one", "assert add_one(1) == 2\n", ADD_STARTER),
    "cyclic": functional("cyclic", "decode", 'assert decode(encode("abcdef")) == "abcdef"\n', CYCLIC_STARTER),
    "st": livecodebench["lcb_fixture_abc_sum"],
    "sum_positive": livecodebench["lcb_fixture_sum_positive"],
    "total": functional("total", "total", "assert Solution().total() == 10\n", TOTAL_STARTER),
  }


@pytest.mark.parametrize("key,completion,expected", [c[1:4] for c in CASES], ids=[c[0] for c in CASES])
def test_extracted_code(problems, key, completion, expected):
  assert extract_code(completion, problems[key]) == expected


@pytest.mark.parametrize("completion,expected", [c[2:4] for c in FENCES], ids=[c[0] for c in FENCES])
def test_fences_without_a_problem(completion, expected):
  assert extract_code(completion) == expected


def test_prose_without_a_problem_gives_the_longest_span():
  assert extract_code(f"Here is my solution:\n\n{ADD}\nThis runs in O(1).") == ADD
  assert extract_code(f"A helper:\n\n{IS_PRIME}\nThe count:\n\n{COUNT}\nDone.") == IS_PRIME


@pytest.mark.parametrize("fenced", [False, True])
def test_degenerate_text_is_no_code(problems, fenced):
  # Deep nesting overflows the parser (MemoryError, not SyntaxError): read as code that does not parse.
  text = "-" * 20000
  completion = f"{F}python\n{text}\n{F}\n" if fenced else f"Here:\n{text}\ndef add_one(x):\n    return x + 1\n"
  assert extract_code(completion, problems["add"]) == (f"{text}\n" if fenced else ADD)


def test_verdicts(problems):
  # Through the real grader: what each fix makes pass, and the guards that must still fail.
  completions = {}
  for _, key, completion, _, _ in CASES:
    completions.setdefault(problems[key].task_id, []).append(completion)
  limits = SandboxLimits(timeout_s=10, cpu_time_s=10)
  by_task_id = evaluate(list(problems.values()), completions, limits=limits, workers=2).by_task_id()
  samples = {key: iter(by_task_id[problem.task_id].samples) for key, problem in problems.items()}
  passed = {name: next(samples[key]).passed for name, key, _, _, _ in CASES}
  assert passed == {name: passes for name, _, _, _, passes in CASES}
