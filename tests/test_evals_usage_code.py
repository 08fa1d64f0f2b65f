"""Usage code left out of a solution's form: only what feeds a usage example, never what the solution reads."""

import ast

import pytest

from ssd_jax.evals.correct_diversity import solution_form
from ssd_jax.evals.name_reads import free_reads
from ssd_jax.evals.usage_code import solution_statements

LOOP = "def loop(n):\n    s = 0\n    for i in range(n + 1):\n        s += i\n    return s\n"
FORMULA = "def formula(n):\n    return n * (n + 1) // 2\n"


def _dropped(code: str) -> list[str]:
  body = ast.parse(code).body
  kept = solution_statements(body)
  return [ast.unparse(s) for s in body if s not in kept and not isinstance(s, ast.Expr)]


def test_a_usage_chain_is_dropped_with_one_look_at_each_link():
  # Each result is read as data (`len`), so none of them may be the function under test.
  chain = "def f(x):\n    return [x]\nv0 = 0\n" + "".join(f"v{i + 1} = f(len(v{i}))\n" for i in range(300))
  assert solution_form(chain + "print(v300)\n") == solution_form("def f(x):\n    return [x]\n")
  # Passed on as they are, the results may be functions (`total = pick(loop)`, then `run(total)`): kept.
  passed = "def f(x):\n    return [x]\nv0 = 0\nv1 = f(v0)\nv2 = f(v1)\nprint(v2)\n"
  assert _dropped(passed) == ["v2 = f(v1)"]


@pytest.mark.parametrize("usage", ["", "print(total(3))\n"])
def test_an_entry_point_built_by_a_call_of_the_program_is_the_solution(usage):
  """`total = pick(loop)` binds the function under test: the loop and the formula stay two solutions."""
  program = "def pick(f):\n    return f\n" + LOOP + FORMULA + "total = pick({})\n" + usage
  assert solution_form(program.format("loop")) != solution_form(program.format("formula"))


@pytest.mark.parametrize(
  "code",
  [
    'VOWELS = "aeiou"\ndef count(s, VOWELS=VOWELS):\n    return sum(c in VOWELS for c in s)\n',  # a default
    'K = 3\nf = lambda x, K=K: x * K\n',
    'words = ("a", "b")\ndef f(s):\n    return [w + s for words in words for w in words]\n',  # first iterable
    "LIMIT = 10\ndef clip(x):\n    class Cfg:\n        LIMIT = 0\n    return min(x, LIMIT)\n",  # class body
    "x = 1\ndef f():\n    x = 2\n    def g():\n        global x\n        return x\n    return g()\n",
    "def f():\n    return K\nr = f(K := 5)\n",  # the walrus binds K
  ],
)
def test_module_data_the_solution_reads_is_kept_even_when_usage_reads_it(code):
  tree = ast.parse(code)
  names = sorted(
    {n.id for s in tree.body for n in ast.walk(s) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
  )
  assert _dropped(code + f"print({', '.join(names)})\n") == []


PICK = "def pick(f):\n    return f\n" + LOOP + FORMULA


@pytest.mark.parametrize(
  "program",
  [
    PICK + "total = pick({})\nprint(list(map(total, [1, 2, 3])))\n",  # passed on: may be the function
    PICK + "def run(fn, x):\n    return fn(x)\ntotal = pick({})\nout = run(total, 3)\nprint(out)\n",
    "def f(n):\n    return n * K\nif __name__ == '__main__':\n    print(f(3))\nelse:\n    K = {}\n",  # graded
    "def f(n):\n    return n * K\nprint(K := {})\n",  # the walrus binds K
    "def f(n):\n    return n * K\nassert (K := {}) > 0\n",
    "ORDER = []\nORDER.extend({!r})\ndef f(s):\n    return sum(c in ORDER for c in s)\n",  # changes its data
    "ORDER = [3, 1, 2]\ndef show(x):\n    return x\nr = show(ORDER.sort(reverse={}))\nprint(r)\ndef f(i):\n"
    "    return ORDER[i]\n",
    "TABLE = []\ndef build(n):\n    TABLE.extend(range(n))\n    return len(TABLE)\nsize = build({})\nprint(size)\n"
    "def f(i):\n    return TABLE[i]\n",  # a call of the program's code that writes module data
    "s = {}\nPREFIX = [s := s + x for x in [1, 2, 3]]\ndef f(i):\n    return PREFIX[i]\nprint(s)\n",
    "K = {}\ndef f(x):\n    return x * globals()['K']\nprint(K)\n",  # reached by string
    "import heapq\nH = [5, 3, 8]\ndef push(x):\n    heapq.heappush(H, x)\n    return H[0]\nr = push({})\nprint(r)\n",
  ],
)
def test_usage_that_changes_what_the_solution_computes_is_kept(program):
  first, second = ("loop", "formula") if "pick" in program else ("2", "3")
  assert solution_form(program.format(first)) != solution_form(program.format(second))


SOLVE = "def solve(n):\n    return HANDLERS['sum'](n)\n"


@pytest.mark.parametrize(
  "usage",
  [
    "HANDLERS = {{}}\ndef register(reg, fn):\n    reg['sum'] = fn\nregister(HANDLERS, {})\n" + SOLVE,  # via arguments
    "def _store(fn):\n    global solve\n    solve = fn\ndef use(fn):\n    _store(fn)\nuse({})\n",  # transitively
    "HANDLERS = {{}}\nclass Registry:\n    def add(self, fn):\n        HANDLERS['sum'] = fn\nRegistry().add({})\n"
    + SOLVE,
    "HANDLERS = {{}}\nclass R:\n    def __init__(self, fn):\n        HANDLERS['sum'] = fn\nR({})\n" + SOLVE,
    "class H:\n    pass\nsetattr(H, 'sum', staticmethod({}))\ndef solve(n):\n    return H.sum(n)\n",
    "globals().update(solve={})\n",
    "exec('solve = {}')\n",
    "import operator\nHANDLERS = {{}}\noperator.setitem(HANDLERS, 'sum', {})\n" + SOLVE,
    "HANDLERS = {{}}\ndict.update(HANDLERS, sum={})\n" + SOLVE,
    "def setup(f):\n    global solve\n    solve = f\n    return 1\ndef show(x):\n    return x\nr = show(setup({}))\n"
    "print(r)\n",  # inside the arguments of a harmless call
    "def pick(f):\n    return f\nsolve = pick({})\nprint(max([1, 2, 3], key=solve))\n",  # an entry point in disguise
    "def pick(f):\n    return f\nsolve = pick({})\nprint(solve.__call__(3))\n",
    "def pick(f):\n    return f\nsolve = pick({})\nprint([g(3) for g in [solve]])\n",
  ],
)
def test_usage_that_chooses_the_solution_is_kept(usage):
  program = LOOP + FORMULA + usage
  assert solution_form(program.format("loop")) != solution_form(program.format("formula"))


@pytest.mark.parametrize(
  "solution, usage",
  [
    (
      "ROMAN = {'I': 1, 'V': 5, 'X': 10}\ndef to_int(s):\n    return sum(ROMAN.get(c, 0) for c in s)\n",
      "print(to_int({!r}))\n",
    ),
    ("import math\ndef area(r):\n    return math.pi * r * r\n", "assert math.isclose(area({}), math.pi * {} ** 2)\n"),
    ("def f(xs):\n    xs.sort()\n    return xs[0]\n", "data = [{}, 1]\nprint(f(data))\n"),  # its own copy
    ("import math\nN = 10\ndef f(x):\n    return math.sqrt(N) * x\n", "print(f({}))\n"),  # reads, never writes
  ],
)
def test_usage_that_only_looks_goes_whatever_its_data(solution, usage):
  assert solution_form(solution + usage.format("3", "3")) == solution_form(solution + usage.format("4", "4"))
  assert solution_form(solution + usage.format("3", "3")) == solution_form(solution)


def test_an_instance_made_for_the_usage_goes_with_it():
  solution = "class Solution:\n    def double(self, n):\n        return n * 2\n"
  usage = "n = 3\nsol = Solution()\nr = sol.double(n)\nprint(r)\n"
  assert solution_form(solution + usage) == solution_form(solution + "print(Solution().double(4))\n")


def test_a_functions_own_names_are_not_the_modules():
  assert free_reads(ast.parse("def f(n):\n    m = n\n    return [n for n in range(m)] + [k]").body[0]) == {"range", "k"}
  # Read outside the function: its defaults, decorators and annotations.
  assert free_reads(ast.parse("@d(A)\ndef f(A=B, *, c: C = 1) -> R:\n    A = 2\n    return A").body[0]) == {
    "d",
    "A",
    "B",
    "C",
    "R",
  }
  # A local shadowing the module's name, even one read before it is bound, is not the module's.
  assert _dropped("x = 5\ndef f():\n    for x in range(3):\n        pass\n    return x\nprint(x)\n") == ["x = 5"]


def test_too_deep_for_pythons_ast_tools_is_compared_as_text():
  deep = "def f(x):\n    return " + " + ".join(["x"] * 3000) + "\nr = f(1)\nprint(r)\n"
  assert solution_form(deep) == " ".join(deep.split())


SOLVE_G = "def solve():\n    return G[0]\n"


@pytest.mark.parametrize(
  "program, usage",
  [
    ("G = [3, 1, 2]\nh = G\n" + SOLVE_G, "h.sort()\n"),  # a top-level name standing for G
    ("G = [1]\n" + SOLVE_G, "print(list(map(lambda x: G.append(x), [2])))\n"),  # inside a lambda it runs
    ("G = [3, 1, 2]\ndef prep():\n    h = G\n    h.sort()\n" + SOLVE_G, "prep()\n"),
    ("G = [[1], [2]]\ndef prep():\n    for i, r in enumerate(G):\n        r.append(i)\n" + SOLVE_G, "prep()\n"),
    ("G = [1]\ndef prep():\n    h = G\n    h += [2]\ndef solve():\n    return len(G)\n", "prep()\n"),
    ("def prep(a):\n    b = a\n    b.sort()\nG = [3, 1, 2]\n" + SOLVE_G, "prep(G)\n"),  # through its argument
    ("def prep(a):\n    t = [a][0]\n    t.append(1)\nG = [3]\ndef solve():\n    return len(G)\n", "prep(G)\n"),
    ("def helper(a):\n    a.sort()\ndef prep():\n    helper(G)\nG = [3, 1]\n" + SOLVE_G, "prep()\n"),
    ("G = [3, 1, 2]\ndef prep():\n    list.sort(G)\n" + SOLVE_G, "prep()\n"),  # a method through its class
    ("import operator\nG = [3]\ndef prep():\n    operator.iadd(G, [1])\ndef solve():\n    return len(G)\n", "prep()\n"),
    ("class U:\n    @staticmethod\n    def prep(xs):\n        xs.sort()\nG = [3, 1, 2]\n" + SOLVE_G, "U.prep(G)\n"),
    ("G = [3, 1, 2]\nclass P:\n    def go(self):\n        G.sort()\n" + SOLVE_G + "p = P()\n", "p.go()\n"),
    # A method that changes its instance, called on one the solution reads.
    (
      "class S:\n    def __init__(self):\n        self.v = [1]\n    def push(self):\n        y = self.v\n"
      "        y.append(2)\n"
      "s = S()\ndef solve():\n    return s.v\n",
      "s.push()\n",
    ),
    ("G = [[1], [2]]\ndef prep():\n    rows = []\n    rows.extend(G)\n    rows[0].append(0)\n" + SOLVE_G, "prep()\n"),
    ("G = [[1]]\ndef prep():\n    c = G[:]\n    xs = [*c]\n    xs[0].append(0)\n" + SOLVE_G, "prep()\n"),
    ("G = [3, 1, 2]\ndef get():\n    return G\n" + SOLVE_G, "get().sort()\n"),  # returned by the program
    ("G = [3, 1, 2]\ndef get():\n    return G\n" + SOLVE_G + "h = get()\n", "h.sort()\n"),
    ("G = [1]\ndef prep():\n    add = G.append\n    add(5)\ndef solve():\n    return len(G)\n", "prep()\n"),
    ("G = [1]\nadd = G.append\ndef solve():\n    return len(G)\n", "add(5)\n"),  # a bound method
    (
      "HIST = [1]\nclass T:\n    def __init__(self):\n        self.log = HIST\n    def add(self, x):\n"
      "        self.log.append(x)\ndef solve():\n    return len(HIST)\n",
      "T().add(1)\n",
    ),  # kept by another method
    (
      "class Solution:\n    memo = {}\n    def f(self, n):\n        return self.memo.get(n, n)\n"
      "def solve():\n    return Solution().f(3)\n",
      "Solution.memo.update({3: 9})\n",
    ),  # a class attribute
    (
      "import sys\ndef f(n):\n    return 0 if n == 0 else 1 + f(n - 1)\ndef solve():\n    return f(5000)\n",
      "sys.setrecursionlimit(10000)\n",
    ),  # the interpreter's state
    ("import random\ndef solve():\n    return random.random()\n", "random.seed(1)\n"),
    ("G = [1]\ndef solve():\n    return len(G)\n", "G.__iadd__([0])\n"),
    ("from collections import Counter\nC = Counter('aab')\ndef solve():\n    return C['a']\n", "C.subtract('a')\n"),
    ("def f(x, acc=[]):\n    acc.append(x)\n    return len(acc)\ndef solve():\n    return f(0)\n", "f(1)\n"),
    (
      "G = [1]\ndef prep():\n    G.append(1)\n    return [G for G in range(2)]\ndef solve():\n    return len(G)\n",
      "prep()\n",
    ),  # a comprehension's own G does not hide the module's
    (
      "WORDS = []\ndef add(acc, s):\n    acc += s.split()\ndef solve():\n    return len(WORDS)\n",
      "add(WORDS, 'a b')\n",
    ),
    ("G = [1]\ndef grow(xs):\n    xs *= 2\ndef solve():\n    return len(G)\n", "grow(G)\n"),  # in place
    (
      "class St:\n    def __init__(self):\n        self.s = []\n    def items(self):\n        return self.s\n"
      "ST = St()\ndef solve():\n    return len(ST.s)\n",
      "ST.items().append(5)\n",
    ),  # not dict.items
    ("G = [3]\npush = lambda x: G.append(x)\ndef solve():\n    return len(G)\n", "push(5)\n"),  # a callable
    ("import queue\nQ = queue.Queue()\ndef solve():\n    return Q.qsize()\n", "Q.put(1)\n"),
    ("G = [3, 1]\ndef get():\n    return lambda: G\n" + SOLVE_G, "get()().sort()\n"),  # a call of a call
    (
      "class Solution:\n    res = []\n    def add(self, x):\n        self.res.append(x)\n        return len(self.res)\n"
      "def solve():\n    return Solution().add(1)\n",
      "print(Solution().add(5))\n",
    ),  # shared by instances
    (
      "from functools import lru_cache\n@lru_cache(None)\ndef gen(n):\n    return list(range(n, 0, -1))\n"
      "def solve():\n    return gen(3)[0]\n",
      "out = gen(3)\nout.sort()\n",
    ),  # one object for every call
    (
      "import sys\ndef setup():\n    sys.setrecursionlimit(10000)\n"
      "def f(n):\n    return 0 if n == 0 else 1 + f(n - 1)\n"
      "def solve():\n    return f(5000)\n",
      "setup()\n",
    ),  # the interpreter's state, from a helper
    ("from collections import deque\nD = deque([1])\ndef solve():\n    return len(D)\n", "deque.append(D, 2)\n"),
    (
      "class B:\n    def __init__(self):\n        self.v = []\n    def push(self, x):\n        self.v.append(x)\n"
      "class S(B):\n    def push2(self, x):\n        super().push(x)\nS1 = S()\ndef solve():\n    return len(S1.v)\n",
      "S1.push2(5)\n",
    ),
    (
      "G = [3, 1]\nclass C:\n    def use(self, xs):\n        self.xs = xs\n"
      "    def clear(self):\n        self.xs.clear()\n"
      "def solve():\n    return len(G)\nc = C()\nc.use(G)\n",
      "c.clear()\n",
    ),  # kept by one method
    # An instance that keeps G, changed inside.
    (
      "G = [[3], [1]]\nclass C:\n    def __init__(self, x):\n        self.x = x\n    def add(self):\n"
      "        self.x[0].append(9)\n" + SOLVE_G + "s = C(G)\n",
      "s.add()\n",
    ),
  ],
)
def test_usage_that_changes_the_solutions_data_through_another_name_is_kept(program, usage):
  assert solution_form(program + usage) != solution_form(program)


@pytest.mark.parametrize(
  "solution, usage",
  [
    (
      "class MinStack:\n    def __init__(self):\n        self.s = []\n    def push(self, x):\n"
      "        self.s.append(x)\n"
      "    def top(self):\n        return self.s[-1]\n",
      "m = MinStack()\nm.push(3)\nprint(m.top())\n",  # push changes its stack, not x
    ),
    ("G = [3, 1]\ndef f():\n    ys = G[:]\n    ys.sort()\n    return ys\n", "print(f())\n"),  # a copy
    ("def f(xs):\n    ys = list(xs)\n    ys.sort()\n    return ys\n", "print(f([3, 1]))\n"),
    ("N = 3\ndef f():\n    g = [[0] * N for _ in range(N)]\n    g[0][0] = 1\n    return g\n", "print(f())\n"),
    (
      "D = [(0, 1), (1, 0)]\ndef f():\n    res = []\n    for d in D:\n        res.append(d)\n    res.sort()\n"
      "    return res\n",
      "print(f())\n",
    ),  # a new list holding D's items, itself changed
    (
      "def group(xs):\n    g = {}\n    for x in xs:\n        g.setdefault(x % 2, []).append(x)\n    return g\n",
      "print(group([1, 2, 3]))\n",
    ),
    # Methods that change their arguments do not make an instance with no argument usage.
    (
      "class Solution:\n    def three(self, nums):\n        nums.sort()\n        return nums[:3]\n",
      "sol = Solution()\nprint(sol.three([3, 2, 1, 0]))\n",
    ),
    ("def words(s):\n    w = s.split()\n    w.reverse()\n    return w\n", "print(words('a b'))\n"),  # new objects
    ("def ones(n):\n    c = bin(n).count('1')\n    c += 1\n    return c\n", "print(ones(5))\n"),
    ("V = 'aeiou'\ndef f(s):\n    t = sum(1 for c in s if c in V)\n    t += 1\n    return t\n", "print(f('ab'))\n"),
    (
      "def perms(xs):\n    out = []\n    def bt(path):\n        if len(path) == len(xs):\n"
      "            out.append(path[:])\n"
      "            return\n        for x in xs:\n            if x not in path:\n                path.append(x)\n"
      "                bt(path)\n                path.pop()\n    bt([])\n    return out\n",
      "print(perms([1, 2]))\n",
    ),
    ("import numpy as np\ndef total(a):\n    return int(np.sum(a))\n", "print(total(np.array([1, 2])))\n"),
    # A number computed from module data is not that data.
    (
      "MOD = 10 ** 9 + 7\ndef f(n):\n    r = 1\n    for i in range(n):\n        r = r * 2 % MOD\n    return r\n",
      "n = 5\nresult = f(n)\nprint(result)\n",
    ),
  ],
)
def test_usage_of_code_that_changes_only_its_own_objects_goes(solution, usage):
  assert solution_form(solution + usage) == solution_form(solution)
