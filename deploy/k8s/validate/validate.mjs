// Validates Kubernetes objects offline against the Kubernetes OpenAPI schemas, as compiled into
// the kubernetes-models package (5.1.0 in package-lock.json: a recent Kubernetes API, with
// resource.k8s.io/v1; no API server needed).
//
//   kubectl kustomize deploy/k8s/overlays/dev | node deploy/k8s/validate/validate.mjs -
//   node deploy/k8s/validate/validate.mjs rendered.yaml ...
//   node deploy/k8s/validate/validate.mjs --self-test
//
// Each YAML document must have a known apiVersion and kind and match its schema: wrong types,
// missing required fields, bad formats (int32, quantities via the schema's types) and, unlike
// the package's own validate(), unknown fields. The compiled schemas never reject unknown
// fields (Kubernetes schemas leave additionalProperties open), so the objects are handed to
// the validator behind proxies that record every field it looks at: a schema with
// `properties` reads each property it knows; a field it never read is one the schema does not
// have (as `kubectl apply --validate=strict` would report it). Maps (labels, data) are read
// whole, so their keys count as known.
//
// Exit status: 0 all valid, 1 some object invalid, 2 usage or input error.

import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parseAllDocuments } from "yaml";

// Returns the compiled validate function for apiVersion/kind, or null if the API has no such kind.
async function validatorFor(apiVersion, kind) {
  if (typeof apiVersion !== "string" || typeof kind !== "string" || !/^[A-Za-z0-9]+$/.test(kind)) {
    return null;
  }
  let classUrl;
  try {
    classUrl = import.meta.resolve(`kubernetes-models/${apiVersion}/${kind}`);
  } catch {
    return null;
  }
  let source;
  try {
    source = readFileSync(fileURLToPath(classUrl), "utf8");
  } catch {
    return null;
  }
  const m = /_schemas\/(\w+)\.js/.exec(source);
  if (!m) return null;
  const mod = await import(`kubernetes-models/_schemas/${m[1]}`);
  return mod.validate;
}

// Wraps `value` so that reads of object fields are recorded in `reads` (object -> Set of keys).
function tracked(value, reads) {
  if (value === null || typeof value !== "object") return value;
  const seen = new Set();
  reads.set(value, seen);
  return new Proxy(value, {
    get(target, key, receiver) {
      if (typeof key === "string") seen.add(key);
      return tracked(Reflect.get(target, key, receiver), reads);
    },
    has(target, key) {
      if (typeof key === "string") seen.add(key);
      return Reflect.has(target, key);
    },
    ownKeys(target) {
      // Enumerating an object (maps: for..in / Object.keys) makes all its keys known.
      for (const k of Reflect.ownKeys(target)) if (typeof k === "string") seen.add(k);
      return Reflect.ownKeys(target);
    },
  });
}

// Paths of fields in `value` that the validator never read.
function unreadFields(value, reads, path, out) {
  if (value === null || typeof value !== "object") return out;
  const seen = reads.get(value);
  if (Array.isArray(value)) {
    value.forEach((v, i) => unreadFields(v, reads, `${path}/${i}`, out));
    return out;
  }
  for (const key of Object.keys(value)) {
    const p = `${path}/${key}`;
    if (seen && !seen.has(key)) {
      out.push(p);
    } else {
      unreadFields(value[key], reads, p, out);
    }
  }
  return out;
}

function describe(obj) {
  const name = obj?.metadata?.name ?? "(no name)";
  return `${obj?.kind ?? "(no kind)"} ${name}`;
}

// Validates one object; returns a list of error strings (empty if valid).
export async function validateObject(obj) {
  if (obj === null || typeof obj !== "object" || Array.isArray(obj)) {
    return ["not an object"];
  }
  const validate = await validatorFor(obj.apiVersion, obj.kind);
  if (!validate) return [`unknown apiVersion/kind ${obj.apiVersion}/${obj.kind}`];
  const reads = new Map();
  const ok = validate(tracked(obj, reads));
  const errors = [];
  if (!ok) {
    for (const e of validate.errors ?? []) {
      errors.push(`${e.instancePath || "/"}: ${e.message ?? e.keyword} ${JSON.stringify(e.params)}`);
    }
  }
  for (const p of unreadFields(obj, reads, "", [])) errors.push(`${p}: unknown field`);
  return errors;
}

// Validates every document of a multi-document YAML text; prints one line per object.
export async function validateText(text, label) {
  let failures = 0;
  let count = 0;
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length) {
      console.log(`FAIL ${label}: YAML: ${doc.errors[0].message}`);
      failures++;
      continue;
    }
    const obj = doc.toJS();
    if (obj === null || obj === undefined) continue;
    count++;
    const errors = await validateObject(obj);
    if (errors.length) {
      failures++;
      console.log(`FAIL ${label}: ${obj.apiVersion} ${describe(obj)}`);
      for (const e of errors) console.log(`     ${e}`);
    } else {
      console.log(`ok   ${label}: ${obj.apiVersion} ${describe(obj)}`);
    }
  }
  return { count, failures };
}

// Broken variants of a valid Deployment: each must fail, the original must pass.
async function selfTest() {
  const good = {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name: "t", labels: { a: "b" } },
    spec: {
      replicas: 1,
      selector: { matchLabels: { a: "b" } },
      template: {
        metadata: { labels: { a: "b" }, annotations: { "prometheus.io/port": "8081" } },
        spec: {
          containers: [{
            name: "c", image: "i", ports: [{ name: "http", containerPort: 8081 }],
            livenessProbe: { httpGet: { path: "/healthz", port: "http" } },
            resources: { limits: { cpu: "1", memory: "1Gi" } },
          }],
        },
      },
    },
  };
  const cases = [
    ["valid", (o) => o, true],
    ["replicas as a string", (o) => { o.spec.replicas = "3"; }, false],
    ["unknown container field", (o) => { o.spec.template.spec.containers[0].imagePullPolicyy = "Always"; }, false],
    ["unknown field at the top of spec", (o) => { o.spec.replica = 3; }, false],
    ["containerPort out of int32", (o) => { o.spec.template.spec.containers[0].ports[0].containerPort = 2 ** 40; }, false],
    ["missing selector", (o) => { delete o.spec.selector; }, false],
    ["annotation value not a string", (o) => { o.spec.template.metadata.annotations["prometheus.io/port"] = 8081; }, false],
    ["unknown kind", (o) => { o.kind = "Deploymentt"; }, false],
  ];
  let bad = 0;
  for (const [name, mutate, valid] of cases) {
    const o = structuredClone(good);
    mutate(o);
    const errors = await validateObject(o);
    const passed = (errors.length === 0) === valid;
    if (!passed) bad++;
    console.log(`${passed ? "ok  " : "FAIL"} self-test: ${name}: ${errors.length ? errors.join("; ") : "valid"}`);
  }
  console.log(`${cases.length - bad} passed, ${bad} failed`);
  return bad === 0;
}

async function main(args) {
  if (args.length === 0 || args.includes("-h") || args.includes("--help")) {
    console.error("usage: validate.mjs FILE|- ...   or   validate.mjs --self-test");
    return 2;
  }
  if (args[0] === "--self-test") return (await selfTest()) ? 0 : 1;
  let count = 0;
  let failures = 0;
  for (const a of args) {
    let text;
    try {
      text = readFileSync(a === "-" ? 0 : a, "utf8");
    } catch (e) {
      console.error(`validate.mjs: cannot read ${a}: ${e.message}`);
      return 2;
    }
    const r = await validateText(text, a === "-" ? "stdin" : a);
    count += r.count;
    failures += r.failures;
  }
  if (count === 0) {
    console.error("validate.mjs: no objects");
    return 2;
  }
  console.log(`${count - failures} valid, ${failures} invalid`);
  return failures ? 1 : 0;
}

process.exitCode = await main(process.argv.slice(2));
