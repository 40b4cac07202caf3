// deploy/kubernetes: every manifest parses (YAML 1.1, as kubectl reads it),
// validates against the Kubernetes (and prometheus-operator) API schemas
// bundled in the npm packages kubernetes-models and
// @kubernetes-models/prometheus-operator, has no field the API does not know
// (checked by TypeScript's excess-property check against the same packages'
// types), and fits together: selectors match pod labels, ports match the
// configuration, probes point at real endpoints, the capabilities match the
// systemd unit, the PrometheusRule is alerts.yml.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import type { TestContext } from 'node:test';
import { loadConfig } from '../../src/config/load.js';
import { lacksCommand, lacksRoot } from '../support/require.js';
import { DEPLOY, ROOT, lacksServe, optionalImport, readDeploy, tmpDir } from './support.js';
import { filtersRunAsTheirUsers } from './privileges.js';

const K8S = path.join(DEPLOY, 'kubernetes');
type Obj = Record<string, any>;

/** Which model validates each kind: module path and export name. */
const MODELS: Record<string, { apiVersion: string; module: string; name: string }> = {
  ConfigMap: { apiVersion: 'v1', module: 'kubernetes-models/v1/ConfigMap', name: 'ConfigMap' },
  Service: { apiVersion: 'v1', module: 'kubernetes-models/v1/Service', name: 'Service' },
  NetworkPolicy: { apiVersion: 'networking.k8s.io/v1', module: 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy', name: 'NetworkPolicy' },
  Deployment: { apiVersion: 'apps/v1', module: 'kubernetes-models/apps/v1/Deployment', name: 'Deployment' },
  PodDisruptionBudget: { apiVersion: 'policy/v1', module: 'kubernetes-models/policy/v1/PodDisruptionBudget', name: 'PodDisruptionBudget' },
  HorizontalPodAutoscaler: { apiVersion: 'autoscaling/v2', module: 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler', name: 'HorizontalPodAutoscaler' },
  PodMonitor: { apiVersion: 'monitoring.coreos.com/v1', module: '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor', name: 'PodMonitor' },
  PrometheusRule: { apiVersion: 'monitoring.coreos.com/v1', module: '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule', name: 'PrometheusRule' },
};

interface Manifest {
  file: string;
  doc: Obj;
}

async function loadManifests(t: TestContext): Promise<Manifest[] | null> {
  const YAML = await optionalImport(t, 'yaml');
  if (!YAML) return null;
  const out: Manifest[] = [];
  for (const file of fs.readdirSync(K8S).filter((f) => f.endsWith('.yaml')).sort()) {
    const docs = YAML.parseAllDocuments(fs.readFileSync(path.join(K8S, file), 'utf8'), { version: '1.1', uniqueKeys: true });
    for (const d of docs) {
      assert.deepEqual(d.errors.map(String), [], `${file}: YAML errors`);
      assert.deepEqual(d.warnings.map(String), [], `${file}: YAML warnings`);
      out.push({ file, doc: d.toJS() as Obj });
    }
  }
  return out;
}

function only(ms: Manifest[], kind: string): Obj {
  const found = ms.filter((m) => m.doc.kind === kind);
  assert.equal(found.length, 1, `exactly one ${kind}`);
  return found[0]!.doc;
}

/** Every key=value of `selector` is also on `labels`. */
function selects(selector: Record<string, string> | undefined, labels: Record<string, string> | undefined): boolean {
  assert.ok(selector && Object.keys(selector).length > 0, 'a non-empty selector');
  return Object.entries(selector).every(([k, v]) => labels?.[k] === v);
}

test('every manifest validates against the Kubernetes API schemas (kubernetes-models)', async (t) => {
  const ms = await loadManifests(t);
  if (!ms) return;
  const kinds = ms.map((m) => m.doc.kind as string).filter((k) => k !== 'Kustomization').sort();
  assert.deepEqual(kinds, ['ConfigMap', 'ConfigMap', 'Deployment', 'HorizontalPodAutoscaler', 'NetworkPolicy', 'PodDisruptionBudget', 'PodMonitor', 'PrometheusRule', 'Service']);
  for (const { file, doc } of ms) {
    if (doc.kind === 'Kustomization') continue;
    const model = MODELS[doc.kind as string];
    assert.ok(model, `${file}: no schema for kind ${String(doc.kind)}`);
    assert.equal(doc.apiVersion, model.apiVersion, `${file}: apiVersion`);
    assert.match(doc.metadata?.name ?? '', /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, `${file}: metadata.name`);
    const mod = await optionalImport<Record<string, new (d: Obj) => { validate(): void }>>(t, model.module);
    if (!mod) return;
    const Model = mod[model.name];
    assert.ok(Model, `${model.module} exports ${model.name}`);
    assert.doesNotThrow(() => new Model(doc).validate(), `${file}: ${doc.kind} does not validate`);
  }
});

test('no manifest has a field the API does not know (TypeScript excess-property check)', { timeout: 120_000 }, async (t) => {
  const ms = await loadManifests(t);
  if (!ms) return;
  if (!(await optionalImport(t, 'kubernetes-models/v1/ConfigMap'))) return;
  if (!(await optionalImport(t, '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor'))) return;
  const ts = (await import('typescript')).default;
  const lines: string[] = [];
  const imported = new Set<string>();
  ms.forEach(({ file, doc }, i) => {
    const model = MODELS[doc.kind as string];
    if (!model) return;
    if (!imported.has(model.name)) {
      lines.push(`import type { I${model.name} } from '${model.module}';`);
      imported.add(model.name);
    }
    lines.push(`// ${file}`, `export const m${i}: I${model.name} = ${JSON.stringify(doc, null, 2)};`);
  });
  const dir = tmpDir(t, 'k8s-types');
  const file = path.join(dir, 'manifests.ts');
  fs.writeFileSync(file, lines.join('\n') + '\n');
  const program = ts.createProgram([file], {
    noEmit: true, strict: true, skipLibCheck: true, types: [],
    target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext, moduleResolution: ts.ModuleResolutionKind.Bundler,
    baseUrl: ROOT,
    paths: { 'kubernetes-models/*': ['node_modules/kubernetes-models/*'], '@kubernetes-models/*': ['node_modules/@kubernetes-models/*'] },
  });
  const problems = ts.getPreEmitDiagnostics(program).map((d) => {
    const where = d.file && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start).line + 1 : 0;
    return `${where}: ${ts.flattenDiagnosticMessageText(d.messageText, ' ')}`;
  });
  assert.deepEqual(problems, [], `see ${file}`);
});

test('selectors, ports, probes and volumes fit together and match the configuration', async (t) => {
  const ms = await loadManifests(t);
  if (!ms) return;
  const deploy = only(ms, 'Deployment');
  const pod = deploy.spec.template;
  const podLabels = pod.metadata.labels as Record<string, string>;
  assert.ok(selects(deploy.spec.selector.matchLabels, podLabels), 'Deployment selector matches its pod labels');
  const service = only(ms, 'Service');
  assert.ok(selects(service.spec.selector, podLabels), 'Service selects the pods');
  const pdb = only(ms, 'PodDisruptionBudget');
  assert.ok(selects(pdb.spec.selector.matchLabels, podLabels), 'PDB selects the pods');
  const podMonitor = only(ms, 'PodMonitor');
  assert.ok(selects(podMonitor.spec.selector.matchLabels, podLabels), 'PodMonitor selects the pods');
  for (const c of pod.spec.topologySpreadConstraints ?? []) assert.ok(selects(c.labelSelector.matchLabels, podLabels));

  // The milter container and its configuration (the ConfigMap's config.json).
  const milter = (pod.spec.containers as Obj[]).find((c) => c.name === 'milter');
  assert.ok(milter);
  const ports = new Map<string, number>((milter.ports as Obj[]).map((p) => [p.name as string, p.containerPort as number]));
  const configMap = ms.find((m) => m.doc.kind === 'ConfigMap' && m.doc.metadata.name === 'per-user-milter-config')?.doc;
  assert.ok(configMap, 'ConfigMap per-user-milter-config');
  const cfgFile = path.join(tmpDir(t, 'k8s-config'), 'config.json');
  fs.writeFileSync(cfgFile, configMap.data['config.json']);
  const { config } = loadConfig({ file: cfgFile, env: {}, args: [] });
  const milterPort = /^inet:(\d+)@(.+)$/.exec(config.milter.listen);
  assert.ok(milterPort, `milter.listen must be inet: in a pod, got ${config.milter.listen}`);
  assert.equal(milterPort[2], '0.0.0.0', 'milter listens on the pod address');
  assert.equal(Number(milterPort[1]), ports.get('milter'), 'container port milter = milter.listen');
  const metricsPort = /^(.+):(\d+)$/.exec(config.metrics.listen);
  assert.ok(metricsPort);
  assert.equal(metricsPort[1], '0.0.0.0', 'metrics reachable from Prometheus');
  assert.equal(Number(metricsPort[2]), ports.get('metrics'), 'container port metrics = metrics.listen');
  assert.equal(config.filter.sandbox, 'setpriv');

  // The config volume is that ConfigMap, mounted where --config looks.
  const volumes = new Map<string, Obj>((pod.spec.volumes as Obj[]).map((v) => [v.name as string, v]));
  for (const c of pod.spec.containers as Obj[]) {
    for (const m of c.volumeMounts ?? []) assert.ok(volumes.has(m.name), `${c.name} mounts undefined volume ${m.name}`);
  }
  const mounts = new Map<string, string>((milter.volumeMounts as Obj[]).map((m) => [m.name as string, m.mountPath as string]));
  assert.equal(volumes.get('config')?.configMap?.name, 'per-user-milter-config');
  const cfgArg = (milter.args as string[])[(milter.args as string[]).indexOf('--config') + 1];
  assert.equal(milter.args[0], 'serve');
  assert.equal(cfgArg, path.join(mounts.get('config') ?? '', 'config.json'));
  assert.equal(mounts.get('spool'), config.spool.dir, 'spool volume at spool.dir');
  assert.equal(mounts.get('homes'), '/home');
  assert.ok(volumes.get('homes')?.persistentVolumeClaim?.claimName, 'homes from a shared claim');
  assert.equal(volumes.get('sssd-conf')?.secret?.defaultMode, 0o600, 'sssd.conf mode 0600');
  const sssd = (pod.spec.containers as Obj[]).find((c) => c.name === 'sssd');
  assert.ok(sssd, 'sssd sidecar for directory users');
  const sssdMounts = new Set((sssd.volumeMounts as Obj[]).map((m) => `${m.name}:${m.mountPath}`));
  assert.ok(sssdMounts.has(`sss-pipes:${mounts.get('sss-pipes')}`), 'NSS pipes shared with the milter');

  // Probes point at real endpoints: the milter socket and /metrics.
  assert.equal(milter.readinessProbe.tcpSocket.port, 'milter');
  for (const probe of [milter.livenessProbe, milter.startupProbe]) {
    assert.equal(probe.httpGet.path, '/metrics');
    assert.ok(ports.has(probe.httpGet.port), `probe port ${probe.httpGet.port} is a container port`);
    assert.equal(ports.get(probe.httpGet.port), Number(metricsPort[2]));
  }
  // The Service and the PodMonitor use the named container ports.
  for (const p of service.spec.ports as Obj[]) {
    assert.ok(ports.has(p.targetPort), `Service targetPort ${p.targetPort}`);
    assert.equal(p.port, ports.get(p.targetPort), 'Service port = container port (Postfix/Sendmail lines in docs)');
  }
  for (const e of podMonitor.spec.podMetricsEndpoints as Obj[]) {
    assert.ok(ports.has(e.port));
    assert.equal(e.path, '/metrics');
  }
  // jobLabel gives job="per-user-milter", which alerts.yml matches on.
  assert.equal(podLabels[podMonitor.spec.jobLabel], 'per-user-milter');

  // Same capabilities as the systemd unit's bounding set, everything else dropped.
  const unitCaps = /^CapabilityBoundingSet=(.*)$/m.exec(readDeploy('systemd/per-user-milter.service'))?.[1]?.trim().split(/\s+/).map((c) => c.replace(/^CAP_/, '')).sort();
  const sc = milter.securityContext;
  assert.deepEqual([...sc.capabilities.add].sort(), unitCaps);
  assert.deepEqual(sc.capabilities.drop, ['ALL']);
  assert.equal(sc.allowPrivilegeEscalation, false, 'no_new_privs');
  assert.equal(sc.readOnlyRootFilesystem, true);
  assert.equal(pod.spec.automountServiceAccountToken, false);

  // Graceful stop fits: preStop pause + filter.timeout + 2 s SIGKILL grace.
  const preStop = Number(milter.lifecycle.preStop.exec.command[1]);
  assert.ok(pod.spec.terminationGracePeriodSeconds >= preStop + config.filter.timeout / 1000 + 2);
  assert.equal(deploy.spec.strategy.rollingUpdate.maxUnavailable, 0);
  assert.equal(config.pool.threads, Number(milter.resources.limits.cpu), 'pool.threads = CPU limit');
});

test('the HPA scales the Deployment on pool utilisation served by prometheus-adapter', async (t) => {
  const ms = await loadManifests(t);
  if (!ms) return;
  const YAML = await optionalImport(t, 'yaml');
  if (!YAML) return;
  const deploy = only(ms, 'Deployment');
  const hpa = only(ms, 'HorizontalPodAutoscaler');
  assert.deepEqual(hpa.spec.scaleTargetRef, { apiVersion: deploy.apiVersion, kind: 'Deployment', name: deploy.metadata.name });
  assert.equal(hpa.spec.metrics.length, 1);
  const metric = hpa.spec.metrics[0];
  assert.equal(metric.type, 'Pods');
  assert.equal(metric.pods.metric.name, 'per_user_milter_pool_utilization', 'docs/reference.md §6 gauge');
  assert.equal(metric.pods.target.type, 'AverageValue');
  assert.ok(hpa.spec.minReplicas > only(ms, 'PodDisruptionBudget').spec.maxUnavailable, 'min replicas leave pods during a disruption');
  assert.ok(hpa.spec.maxReplicas > hpa.spec.minReplicas);
  const adapter = ms.find((m) => m.doc.metadata?.name === 'per-user-milter-prometheus-adapter')?.doc;
  assert.ok(adapter);
  const rules = YAML.parse(adapter.data['config.yaml']) as Obj;
  const rule = (rules.rules as Obj[]).find((r) => String(r.seriesQuery).startsWith(metric.pods.metric.name));
  assert.ok(rule, 'an adapter rule serves the HPA metric');
  assert.equal(rule.name.as, metric.pods.metric.name);
  assert.deepEqual(Object.keys(rule.resources.overrides).sort(), ['namespace', 'pod']);
});

test('the PrometheusRule carries exactly deploy/prometheus/alerts.yml', async (t) => {
  const ms = await loadManifests(t);
  if (!ms) return;
  const YAML = await optionalImport(t, 'yaml');
  if (!YAML) return;
  const alerts = YAML.parse(readDeploy('prometheus/alerts.yml')) as Obj;
  assert.deepEqual(only(ms, 'PrometheusRule').spec, alerts, 'regenerate prometheusrule.yaml (docs/operating.md)');
});

test('kustomization.yaml lists every manifest', async (t) => {
  const ms = await loadManifests(t);
  if (!ms) return;
  const k = only(ms, 'Kustomization');
  const files = fs.readdirSync(K8S).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml').sort();
  assert.deepEqual([...(k.resources as string[])].sort(), files);
});

test('the Containerfile builds a Debian + Node.js LTS image with setpriv, bwrap, NSS for sssd, and serve as its command', () => {
  const text = readDeploy('kubernetes/Containerfile');
  const stages = [...text.matchAll(/^FROM\s+(\S+)(?:\s+AS\s+(\S+))?\s*$/gim)].map((m) => ({ image: m[1] ?? '', name: m[2] ?? '' }));
  assert.ok(stages.length >= 2);
  for (const s of stages) assert.match(s.image, /(node:(22|24|26)-bookworm|debian:bookworm)/, `Debian-based, a supported Node.js line: ${s.image}`);
  assert.doesNotMatch(text, /node:(1\d|20|21|23|25)\b/, 'no end-of-life or odd-numbered Node.js line');
  const last = stages.at(-1)!;
  assert.match(last.image, /node:(22|24|26)-/, 'the default (last) stage is the milter on a Node.js LTS line');
  // The build and the runtime stage use the same Node.js.
  assert.equal(stages.find((x) => x.name === 'build')?.image, last.image);
  const runtime = text.slice(text.lastIndexOf('FROM '));
  for (const pkg of ['util-linux', 'bubblewrap', 'libnss-sss', 'tini']) assert.match(runtime, new RegExp(`\\b${pkg}\\b`), `installs ${pkg}`);
  assert.match(runtime, /passwd:\s+files sss/);
  const entry = /^ENTRYPOINT\s+(\[.*\])\s*$/m.exec(runtime);
  assert.ok(entry);
  const argv = JSON.parse(entry[1] ?? '[]') as string[];
  assert.equal(argv[0], '/usr/bin/tini', 'an init that reaps orphaned filter processes');
  const mainJs = argv.find((a) => a.endsWith('/dist/src/main.js'));
  assert.ok(mainJs && runtime.includes(`/src/dist ${path.dirname(path.dirname(path.dirname(mainJs)))}/dist`), 'ENTRYPOINT runs the copied build');
  assert.deepEqual(JSON.parse(/^CMD\s+(\[.*\])\s*$/m.exec(runtime)?.[1] ?? '[]'), ['serve', '--config', '/etc/per-user-milter/config.json']);
  assert.match(runtime, /^EXPOSE 8890 9464$/m);
  // The build stage compiles what exists in the repository.
  for (const m of text.matchAll(/^COPY\s+(?!--from)(.+)\s+\S+$/gm)) {
    for (const src of (m[1] ?? '').split(/\s+/)) assert.ok(fs.existsSync(path.join(ROOT, src)), `COPY source ${src} exists`);
  }
});

test("the pod's securityContext (uid 0, the launcher's five capabilities, no_new_privs) is enough to run filters as their users", { timeout: 120_000 }, async (t) => {
  if (lacksRoot(t) || lacksCommand(t, 'setpriv', 'util-linux') || lacksServe(t)) return;
  const ms = await loadManifests(t);
  if (!ms) return;
  const pod = only(ms, 'Deployment').spec.template.spec;
  const milter = (pod.containers as Obj[]).find((c) => c.name === 'milter');
  assert.ok(milter);
  const sc = milter.securityContext;
  assert.equal(sc.runAsUser, 0);
  assert.deepEqual(sc.capabilities.drop, ['ALL']);
  const configMap = ms.find((m) => m.doc.kind === 'ConfigMap' && m.doc.metadata.name === 'per-user-milter-config')?.doc;
  const sandbox = (JSON.parse(configMap?.data['config.json'] ?? '{}') as { filter: { sandbox: 'setpriv' | 'bwrap' } }).filter.sandbox;
  // The container's privileges in the words of a unit file: root, a
  // bounding (= effective) set of exactly the added capabilities, and
  // allowPrivilegeEscalation: false = no_new_privs.
  const unitText = [
    '[Service]',
    `User=${sc.runAsUser === 0 ? 'root' : String(sc.runAsUser)}`,
    `NoNewPrivileges=${sc.allowPrivilegeEscalation === false ? 'yes' : 'no'}`,
    `CapabilityBoundingSet=${(sc.capabilities.add as string[]).map((c) => `CAP_${c}`).join(' ')}`,
    '',
  ].join('\n');
  await filtersRunAsTheirUsers(t, { unitText, sandbox, portFrom: 25430, prefix: 'pumops-k8s' });
});

test('the NetworkPolicy admits only the MTA pods to the milter port and only Prometheus to the metrics port', async (t) => {
  const ms = await loadManifests(t);
  if (!ms) return;
  const pod = only(ms, 'Deployment').spec.template;
  const podLabels = pod.metadata.labels as Record<string, string>;
  const np = only(ms, 'NetworkPolicy');
  assert.ok(selects(np.spec.podSelector.matchLabels, podLabels), 'it applies to the milter pods');
  // Ingress listed: everything not admitted below is denied. Egress is not
  // restricted (filters talk to spamd, DNS, LDAP).
  assert.deepEqual(np.spec.policyTypes, ['Ingress']);
  const milter = (pod.spec.containers as Obj[]).find((c) => c.name === 'milter');
  const portNames = new Set((milter?.ports as Obj[]).map((p) => p.name as string));
  const rules = np.spec.ingress as Obj[];
  assert.equal(rules.length, 2);
  const byPort = new Map<string, Obj>();
  for (const r of rules) {
    assert.ok(Array.isArray(r.from) && r.from.length > 0, 'every rule names who may connect (no open rule)');
    assert.equal(r.ports.length, 1, 'one port per rule');
    const port = r.ports[0];
    assert.ok(portNames.has(port.port), `port ${port.port} is a named container port`);
    assert.equal(port.protocol, 'TCP');
    byPort.set(port.port, r);
    for (const peer of r.from as Obj[]) {
      assert.equal(peer.ipBlock, undefined, 'no address ranges');
      assert.ok(Object.keys(peer.podSelector?.matchLabels ?? {}).length > 0, 'a pod selector with labels, never all pods');
    }
  }
  assert.deepEqual([...byPort.keys()].sort(), ['metrics', 'milter']);
  const mta = byPort.get('milter')!.from as Obj[];
  assert.deepEqual(mta.map((p) => p.podSelector.matchLabels), [{ 'per-user-milter.io/mta': 'true' }]);
  const prom = byPort.get('metrics')!.from as Obj[];
  assert.deepEqual(prom.map((p) => p.podSelector.matchLabels), [{ 'app.kubernetes.io/name': 'prometheus' }]);
  assert.deepEqual(prom[0]?.namespaceSelector?.matchLabels, { 'kubernetes.io/metadata.name': 'monitoring' });
  // The MTA label does not select the milter itself, nor Prometheus.
  assert.ok(!selects(mta[0]?.podSelector.matchLabels, podLabels));
});
