import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

/**
 * The shape of the tree, checked by parsing only (no servers, no type checking):
 * the layers import each other without cycles, and an index.ts under workflows/,
 * activities/ or common/ only re-exports or composes what its folder holds.
 */

const root = fileURLToPath(new URL('..', import.meta.url));
const LAYERS = ['common', 'lib', 'activities', 'workflows', 'worker', 'client'];

function sourceFiles(dir: string): string[] {
  return fs.readdirSync(path.join(root, dir), { withFileTypes: true }).flatMap((e) => {
    const rel = path.join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(rel);
    return /\.(ts|mts)$/.test(e.name) && !e.name.endsWith('.d.ts') ? [rel] : [];
  });
}

function parse(rel: string): ts.SourceFile {
  return ts.createSourceFile(rel, fs.readFileSync(path.join(root, rel), 'utf8'), ts.ScriptTarget.Latest, true);
}

/** Relative specifiers of every import, re-export and dynamic import, type-only ones included. */
function specifiers(sf: ts.SourceFile): string[] {
  const found: string[] = [];
  const visit = (node: ts.Node): void => {
    if ((ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
      found.push(node.moduleSpecifier.text);
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      const [arg] = node.arguments;
      if (arg && ts.isStringLiteral(arg)) found.push(arg.text);
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument) && ts.isStringLiteral(node.argument.literal)) {
      found.push(node.argument.literal.text);
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return found.filter((s) => s.startsWith('.'));
}

function resolve(from: string, spec: string, known: Set<string>): string | undefined {
  const target = path.join(path.dirname(from), spec);
  const candidates = [target.replace(/\.js$/, '.ts'), target.replace(/\.mjs$/, '.mts'), target, `${target}.ts`, path.join(target, 'index.ts')];
  return candidates.find((c) => known.has(c));
}

/** Every import cycle, each as the list of files around it (Tarjan's strongly connected components). */
function cycles(graph: Map<string, string[]>): string[][] {
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const connect = (v: string): void => {
    index.set(v, next);
    low.set(v, next);
    next += 1;
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        connect(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v)!, index.get(w)!));
      }
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      if (component.length > 1 || (graph.get(v) ?? []).includes(v)) found.push(component.sort());
    }
  };
  for (const v of graph.keys()) if (!index.has(v)) connect(v);
  return found;
}

/** A function whose whole body is `return { ...a(deps), ...b(deps) }`: composition, no logic. */
function isComposition(node: ts.FunctionDeclaration): boolean {
  const statements = node.body?.statements ?? [];
  if (statements.length !== 1) return false;
  const [only] = statements;
  if (!only || !ts.isReturnStatement(only) || !only.expression) return false;
  const value = only.expression;
  return ts.isObjectLiteralExpression(value) && value.properties.every((p) => ts.isSpreadAssignment(p));
}

/** Top-level statements an index file may not hold, described for the failure message. */
function notReexports(sf: ts.SourceFile): string[] {
  return sf.statements
    .filter((s) => {
      if (ts.isImportDeclaration(s) || ts.isTypeAliasDeclaration(s)) return false;
      if (ts.isExportDeclaration(s)) return !s.moduleSpecifier && !s.isTypeOnly;
      if (ts.isFunctionDeclaration(s)) return !isComposition(s);
      return true;
    })
    .map((s) => `${sf.fileName}:${sf.getLineAndCharacterOfPosition(s.getStart()).line + 1}: ${s.getText().split('\n')[0]}`);
}

describe('architecture', () => {
  const files = LAYERS.flatMap(sourceFiles);
  const known = new Set(files);

  it('has no import cycles between modules', () => {
    const graph = new Map<string, string[]>();
    for (const file of files) {
      const targets = specifiers(parse(file))
        .map((spec) => resolve(file, spec, known))
        .filter((t): t is string => t !== undefined);
      graph.set(file, [...new Set(targets)]);
    }
    expect(graph.size).toBeGreaterThan(50);
    expect(cycles(graph)).toEqual([]);
  });

  it('finds a cycle when there is one', () => {
    const graph = new Map([
      ['a.ts', ['b.ts']],
      ['b.ts', ['c.ts']],
      ['c.ts', ['a.ts']],
      ['d.ts', ['a.ts']],
    ]);
    expect(cycles(graph)).toEqual([['a.ts', 'b.ts', 'c.ts']]);
  });

  it('keeps index.ts files under workflows/, activities/ and common/ to re-exports and composition', () => {
    const indexes = files.filter((f) => /^(workflows|activities|common)\//.test(f) && path.basename(f) === 'index.ts');
    expect(indexes).toContain(path.join('workflows', 'index.ts'));
    expect(indexes.flatMap((f) => notReexports(parse(f)))).toEqual([]);
  });

  it('keeps every function in workflows/ (declaration, arrow or method) to at most 120 lines', () => {
    const MAX_LINES = 120;
    const workflowFiles = files.filter((f) => f.startsWith(`workflows${path.sep}`));
    expect(workflowFiles.length).toBeGreaterThan(10);
    const long: string[] = [];
    for (const file of workflowFiles) {
      const sf = parse(file);
      const visit = (node: ts.Node): void => {
        if (ts.isFunctionLike(node) && 'body' in node && node.body) {
          const first = sf.getLineAndCharacterOfPosition(node.getStart()).line + 1;
          const last = sf.getLineAndCharacterOfPosition(node.getEnd()).line + 1;
          const name = 'name' in node && node.name ? node.name.getText() : '(anonymous)';
          if (last - first + 1 > MAX_LINES) long.push(`${file}:${first}: ${name} spans ${last - first + 1} lines`);
        }
        ts.forEachChild(node, visit);
      };
      visit(sf);
    }
    expect(long).toEqual([]);
  });
});
