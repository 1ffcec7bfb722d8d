"""The package layout's rules: the import-linter contracts of ``.importlinter``
(run as CI runs them) and, with grimp, no import cycle among the project's
modules, imports inside functions counted."""

import os
import shutil
import subprocess
import sys
import unittest

import grimp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("tea_keras", "search", "deploy")


def _graph():
  # grimp imports the packages by name: this checkout's, not an installed copy.
  sys.path.insert(0, ROOT)
  try:
    return grimp.build_graph(*PACKAGES, cache_dir=None)
  finally:
    sys.path.remove(ROOT)


def _cycles(graph):
  """Strongly connected components of more than one module (Tarjan)."""
  modules = sorted(graph.modules)
  index, low, on_stack, stack, out = {}, {}, set(), [], []
  counter = [0]

  def visit(root):
    work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
    index[root] = low[root] = counter[0]
    counter[0] += 1
    stack.append(root)
    on_stack.add(root)
    while work:
      node, children = work[-1]
      child = next(children, None)
      if child is not None:
        if child not in index:
          index[child] = low[child] = counter[0]
          counter[0] += 1
          stack.append(child)
          on_stack.add(child)
          work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
        elif child in on_stack:
          low[node] = min(low[node], index[child])
        continue
      work.pop()
      if work:
        low[work[-1][0]] = min(low[work[-1][0]], low[node])
      if low[node] == index[node]:
        component = []
        while True:
          member = stack.pop()
          on_stack.discard(member)
          component.append(member)
          if member == node:
            break
        if len(component) > 1:
          out.append(sorted(component))

  for module in modules:
    if module not in index:
      visit(module)
  return out


class LayoutTest(unittest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.graph = _graph()

  def test_import_linter_contracts_hold(self):
    exe = shutil.which("lint-imports") or os.path.join(os.path.dirname(sys.executable),
                                                       "lint-imports")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([exe, "--no-cache"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    self.assertEqual(proc.returncode, 0, msg=proc.stdout[-4000:] + proc.stderr[-2000:])
    self.assertIn("0 broken", proc.stdout)

  def test_no_import_cycle_counting_imports_inside_functions(self):
    self.assertEqual(_cycles(self.graph), [], msg="expected no import cycle among the "
                     "project's modules (grimp counts imports inside functions)")

  def test_cycle_finder_finds_a_cycle(self):
    graph = grimp.ImportGraph()
    for module in ("p", "p.a", "p.b", "p.c"):
      graph.add_module(module)
    graph.add_import(importer="p.a", imported="p.b")
    graph.add_import(importer="p.b", imported="p.a")
    graph.add_import(importer="p.c", imported="p.a")
    self.assertEqual(_cycles(graph), [["p.a", "p.b"]])

  def _imports_leaving(self, package):
    return sorted({(importer, imported)
                   for importer in self.graph.find_children(package) | {package}
                   | self.graph.find_descendants(package)
                   for imported in self.graph.find_modules_directly_imported_by(importer)
                   if not (imported == package or imported.startswith(package + "."))})

  def test_optimizer_imports_no_other_project_module(self):
    self.assertEqual(self._imports_leaving("search.optimizer"), [])

  def test_device_package_imports_nothing_outside_itself(self):
    self.assertEqual(self._imports_leaving("deploy.device"), [])


if __name__ == "__main__":
  unittest.main()
