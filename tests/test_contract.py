"""One source for each contract: the README's error table lists exactly the codes the handlers
can answer with, each under the status the code gives it (read from the source's AST)."""

import ast
import re

from tsforge.paths import HANDLERS, ROOT


def codes_in_source() -> dict[str, set[int]]:
    """code -> statuses, from every RequestError(status, "code", ...) and {"error": "code"}."""
    found: dict[str, set[int]] = {}
    for path in HANDLERS.rglob("*.py"):  # codecs/ too
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "RequestError":
                status, code = node.args[:2]
                # A status chosen by a condition (400 if too low else 413) gives both.
                statuses = (status.body, status.orelse) if isinstance(status, ast.IfExp) else (status,)
                if isinstance(code, ast.Constant):  # else a re-raise of another error's code
                    found.setdefault(code.value, set()).update(s.value for s in statuses)
            elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "_failed":
                code = node.args[2]  # self._failed(context, idx, "code", error): a 500
                found.setdefault(code.value, set()).add(500)
            elif isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values, strict=True):
                    if getattr(key, "value", None) == "error" and isinstance(value, ast.Constant):
                        found.setdefault(value.value, set()).add(500)  # server-side failures
    return found


def codes_in_readme() -> dict[str, set[int]]:
    text = (ROOT / "README.md").read_text()
    table = text[text.index("| status | `error` | when |") :].split("\n\n")[0]
    rows = {}
    for line in table.splitlines()[2:]:
        status, codes, _ = line.strip("|").split("|")
        for code in re.findall(r"`(\w+)`", codes):
            rows.setdefault(code, set()).add(int(status))
    return rows


def test_the_readme_error_table_matches_the_code():
    source, readme = codes_in_source(), codes_in_readme()
    assert set(source) == set(readme), (
        f"only in code: {set(source) - set(readme)}, only in README: {set(readme) - set(source)}"
    )
    for code, statuses in source.items():
        assert statuses == readme[code], code
