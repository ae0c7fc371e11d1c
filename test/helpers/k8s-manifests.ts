// Offline checks of Kubernetes manifests, as an API server with strict field validation (kubectl's
// default since 1.27) would make them: each document against the schema of its kind from the
// kubernetes-models package (types, enums, required fields), plus unknown fields, which those
// schemas let through but `kubectl apply` refuses (a misspelt `mountPropagation` would otherwise
// pass here and fail on the cluster). The field lists come from the package's type declarations.
// Custom resources are checked against the openAPIV3Schema of a CRD given by the caller.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { CustomResourceDefinition } from 'kubernetes-models/apiextensions.k8s.io/v1/CustomResourceDefinition';
import { DaemonSet } from 'kubernetes-models/apps/v1/DaemonSet';
import { ClusterRole } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRole';
import { ClusterRoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRoleBinding';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Pod } from 'kubernetes-models/v1/Pod';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';

type Doc = Record<string, unknown>;
// biome-ignore lint/suspicious/noExplicitAny: the document's shape is what validate() checks.
type Loose = any;
interface Validating {
  validate(): void;
}

/** The kinds deploy/ ships, with their model (schema) and the module that declares its fields. */
const MODELS: Record<string, { make: (d: Doc) => Validating; module: string }> = {
  'v1/ServiceAccount': {
    make: (d) => new ServiceAccount(d as Loose),
    module: 'kubernetes-models/v1/ServiceAccount',
  },
  'v1/ConfigMap': {
    make: (d) => new ConfigMap(d as Loose),
    module: 'kubernetes-models/v1/ConfigMap',
  },
  'v1/Pod': { make: (d) => new Pod(d as Loose), module: 'kubernetes-models/v1/Pod' },
  'apps/v1/DaemonSet': {
    make: (d) => new DaemonSet(d as Loose),
    module: 'kubernetes-models/apps/v1/DaemonSet',
  },
  'apiextensions.k8s.io/v1/CustomResourceDefinition': {
    make: (d) => new CustomResourceDefinition(d as Loose),
    module: 'kubernetes-models/apiextensions.k8s.io/v1/CustomResourceDefinition',
  },
  'rbac.authorization.k8s.io/v1/ClusterRole': {
    make: (d) => new ClusterRole(d as Loose),
    module: 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRole',
  },
  'rbac.authorization.k8s.io/v1/ClusterRoleBinding': {
    make: (d) => new ClusterRoleBinding(d as Loose),
    module: 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRoleBinding',
  },
};

interface Decl {
  fields: Map<string, string>;
  imports: Map<string, string>;
  file: string;
}
const decls = new Map<string, Decl | null>();

/** The fields of the interface a kubernetes-models module declares (null: a type alias, a leaf). */
function declOf(file: string): Decl | null {
  if (decls.has(file)) return decls.get(file)!;
  const text = readFileSync(file.replace(/\.js$/, '.d.ts'), 'utf8');
  const imports = new Map<string, string>();
  for (const m of text.matchAll(/import \{ (\w+) \} from "([^"]+)";/g)) imports.set(m[1]!, m[2]!);
  const head = /export interface (\w+)(?: extends ([\w, ]+))? \{\n/.exec(text);
  let decl: Decl | null = null;
  if (head) {
    // A type that refers to itself (JSONSchemaProps.properties) names its own interface.
    imports.set(head[1]!, '.');
    const body = text.slice(head.index + head[0].length, text.indexOf('\n}', head.index));
    const fields = new Map<string, string>();
    // One line per field; a map type spans three: {\n [key: string]: T;\n }.
    for (const m of body.matchAll(
      /^ {4}"([^"]+)"\??: (\{\n\s+\[key: string\]: [^\n]+;\n {4}\}|[^\n]+);$/gm,
    )) {
      fields.set(m[1]!, m[2]!.replace(/\s+/g, ' '));
    }
    if (head[2]?.includes('TypeMeta')) {
      fields.set('apiVersion', 'string');
      fields.set('kind', 'string');
    }
    // An empty interface (JSON, JSONSchemaPropsOrBool) is an opaque value: anything goes.
    if (fields.size > 0) decl = { fields, imports, file };
  }
  decls.set(file, decl);
  return decl;
}

/** Paths (a/b/0/c) of fields the declared types do not have, under `value` of the type `type`. */
function unknownUnder(value: unknown, type: string, from: Decl, path: string, out: string[]): void {
  const array = /^Array<(.+)>$/.exec(type);
  if (array) {
    if (Array.isArray(value)) {
      for (const [i, v] of value.entries()) unknownUnder(v, array[1]!, from, `${path}/${i}`, out);
    }
    return;
  }
  const map = /^\{\s*\[key: string\]: (.+?);?\s*\}$/.exec(type);
  if (map) {
    if (value && typeof value === 'object') {
      for (const [k, v] of Object.entries(value)) unknownUnder(v, map[1]!, from, `${path}/${k}`, out);
    }
    return;
  }
  const spec = from.imports.get(type);
  if (!spec || !value || typeof value !== 'object' || Array.isArray(value)) return;
  const decl = spec === '.' ? from : declOf(createRequire(from.file).resolve(spec));
  if (!decl) return;
  for (const [k, v] of Object.entries(value as Doc)) {
    const t = decl.fields.get(k);
    if (t === undefined) out.push(`${path}/${k}`);
    else unknownUnder(v, t, decl, `${path}/${k}`, out);
  }
}

/** A tiny check of a custom resource against its CRD's openAPIV3Schema (the subset CRDs here use). */
function checkSchema(value: unknown, schema: Doc, path: string, out: string[]): void {
  const type = schema.type as string | undefined;
  const isObject = value !== null && typeof value === 'object' && !Array.isArray(value);
  if (type === 'object' && !isObject) out.push(`${path} must be an object`);
  else if (type === 'string' && typeof value !== 'string') out.push(`${path} must be a string`);
  else if (type === 'array' && !Array.isArray(value)) out.push(`${path} must be an array`);
  if (!isObject) return;
  const obj = value as Doc;
  for (const r of (schema.required as string[] | undefined) ?? []) {
    if (!(r in obj)) out.push(`${path}/${r} is required`);
  }
  const props = schema.properties as Record<string, Doc> | undefined;
  const extra = schema.additionalProperties as Doc | undefined;
  for (const [k, v] of Object.entries(obj)) {
    const prop = props?.[k];
    if (prop) checkSchema(v, prop, `${path}/${k}`, out);
    else if (extra) checkSchema(v, extra, `${path}/${k}`, out);
    // metadata and other fields a CRD leaves open stay open (x-kubernetes-preserve-unknown-fields).
    else if (props && path !== '' && !schema['x-kubernetes-preserve-unknown-fields'])
      out.push(`${path}/${k} is unknown`);
  }
}

/**
 * The problems of one document: schema errors of its kind, unknown fields, or no schema at all.
 * `crds`: the CustomResourceDefinitions custom resources are checked against.
 */
export function manifestProblems(doc: Doc, crds: Doc[] = []): string[] {
  const id = `${doc.apiVersion}/${doc.kind}`;
  const model = MODELS[id];
  if (model) {
    const out: string[] = [];
    try {
      model.make(doc).validate();
    } catch (e) {
      out.push((e as Error).message);
    }
    const root = declOf(createRequire(import.meta.url).resolve(model.module));
    if (root) {
      for (const [k, v] of Object.entries(doc)) {
        const t = root.fields.get(k);
        if (t === undefined) out.push(`/${k} is unknown`);
        else unknownUnder(v, t, root, `/${k}`, out);
      }
    }
    return out;
  }
  const [group, version] = String(doc.apiVersion).split('/');
  const crd = crds.find(
    (c) => (c.spec as Doc).group === group && ((c.spec as Doc).names as Doc).kind === doc.kind,
  );
  const v = ((crd?.spec as Doc | undefined)?.versions as Doc[] | undefined)?.find((x) => x.name === version);
  if (!v) return [`no schema for ${id}: neither kubernetes-models nor a CRD in deploy/ defines it`];
  const out: string[] = [];
  checkSchema(doc, (v.schema as Doc).openAPIV3Schema as Doc, '', out);
  return out;
}
