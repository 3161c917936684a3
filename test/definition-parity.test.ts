import * as fs from 'node:fs';
import * as path from 'node:path';
import { Testing } from 'cdk8s';
import {
  KIND_FIELDS, PRINTER_COLUMN_FIELDS, RULE_FIELDS, SCALE_FIELDS, SCHEMA_KEYWORDS, SUBRESOURCE_FIELDS, VERSION_FIELDS,
  describeUnsupportedFeature, unsupportedFeatures,
} from '../apis/features';
import type { ApiGroupDefinition, JSONSchemaProps, KindDefinition, KindVersion } from '../apis/types';
import { CustomResourceDefinitions } from '../lib/custom-resource-definitions';
import { AggregatedApiServer } from '../lib/aggregated-api-server';
import { ApiResourceRoles } from '../lib/api-resource-roles';
import { Storage } from '../lib/storage';
import { fixtureCertificates } from './constructs/_fixtures';
import { Discovery } from '../server/discovery';
import { OpenApi } from '../server/openapi';
import { RegistryServer } from './support/registry-server';

/**
 * One definition, one meaning: for every field of the definition types (apis/types.ts), what the
 * CRD construct emits and what the bundled server does with it, side by side. The field lists are
 * read from apis/types.ts itself, so a field added there fails this test until apis/features.ts
 * and this table say what it means on both sides.
 */

const GROUP = 'parity.example.com';
type Json = Record<string, unknown>;

function definition(version: Partial<KindVersion> = {}, kind: Partial<KindDefinition> = {}, spec: JSONSchemaProps = { type: 'object' }): ApiGroupDefinition {
  return {
    group: GROUP,
    kinds: [
      {
        kind: 'Thing',
        plural: 'things',
        singular: 'thing',
        scope: 'Namespaced',
        ...kind,
        versions: [{ name: 'v1', served: true, storage: true, schema: { type: 'object', properties: { spec, status: { type: 'object', properties: { replicas: { type: 'integer' } } } } }, ...version }],
      },
    ],
  };
}

/** The synthesized CRD of the definition's one kind. */
function crdOf(api: ApiGroupDefinition): Json {
  const chart = Testing.chart();
  new CustomResourceDefinitions(chart, 'crds', { api });
  return Testing.synth(chart)[0] as Json;
}

const crdVersion = (crd: Json) => ((crd.spec as Json).versions as Json[])[0];
const crdSpecSchema = (crd: Json) => (((crdVersion(crd).schema as Json).openAPIV3Schema as Json).properties as Record<string, Json>).spec;

/** A running registry for the definition (real HTTP, the server's handlers and store). */
async function withServer<T>(api: ApiGroupDefinition, run: (server: RegistryServer) => Promise<T>): Promise<T> {
  const server = await RegistryServer.start({ api, rules: {}, admission: [] });
  try {
    return await run(server);
  } finally {
    await server.close();
  }
}

const THINGS = `/apis/${GROUP}/v1/namespaces/ns1/things`;
let counter = 0;
async function create(server: RegistryServer, spec: unknown, collection = THINGS): Promise<{ status: number; body: Json; headers: Record<string, unknown> }> {
  const reply = await server.post(collection, { metadata: { name: `t${++counter}` }, spec });
  return { status: reply.status, body: reply.body as Json, headers: reply.headers };
}

/** The names of the fields an interface of apis/types.ts declares. */
function declaredFields(interfaceName: string): string[] {
  const text = fs.readFileSync(path.join(__dirname, '..', 'apis', 'types.ts'), 'utf8');
  const start = text.indexOf(`export interface ${interfaceName} {`);
  const body = text.slice(start, text.indexOf('\n}\n', start));
  return [...body.matchAll(/^\s+readonly '?([\w-]+)'?\??:/gm)].map((m) => m[1]);
}

/** A row: a keyword of JSONSchemaProps on spec.x, what the CRD must carry, and the server's verdicts. */
interface KeywordRow {
  readonly keyword: keyof JSONSchemaProps;
  readonly spec: JSONSchemaProps;
  readonly accepted: readonly unknown[];
  readonly refused: readonly unknown[];
  /** Checked on the stored object after creating `{x: input}`. */
  readonly stored?: { readonly input: Json; readonly expected: Json };
}

const str: JSONSchemaProps = { type: 'string' };
const obj = (x: JSONSchemaProps, extra: JSONSchemaProps = {}): JSONSchemaProps => ({ type: 'object', properties: { x }, ...extra });

const KEYWORD_ROWS: readonly KeywordRow[] = [
  { keyword: 'type', spec: obj({ type: 'integer' }), accepted: [{ x: 3 }], refused: [{ x: 'three' }, { x: 1.5 }] },
  { keyword: 'format', spec: obj({ type: 'string', format: 'ipv4' }), accepted: [{ x: '10.0.0.1' }, { x: '010.0.0.1' }], refused: [{ x: '10.0.0.256' }] },
  { keyword: 'description', spec: obj({ type: 'string', description: 'what x is' }), accepted: [{ x: 'a' }], refused: [] },
  { keyword: 'properties', spec: obj(str), accepted: [{ x: 'a' }], refused: [{ x: 1 }] },
  { keyword: 'additionalProperties', spec: { type: 'object', additionalProperties: { type: 'integer' } }, accepted: [{ a: 1, b: 2 }], refused: [{ a: 'one' }] },
  { keyword: 'items', spec: obj({ type: 'array', items: { type: 'integer' } }), accepted: [{ x: [1, 2] }], refused: [{ x: ['a'] }] },
  { keyword: 'required', spec: obj(str, { required: ['x'] }), accepted: [{ x: 'a' }], refused: [{}] },
  { keyword: 'enum', spec: obj({ type: 'string', enum: ['a', 'b'] }), accepted: [{ x: 'a' }], refused: [{ x: 'c' }] },
  { keyword: 'default', spec: obj({ type: 'string', default: 'dflt' }), accepted: [{}], refused: [], stored: { input: {}, expected: { x: 'dflt' } } },
  { keyword: 'nullable', spec: obj({ type: 'string', nullable: true }), accepted: [{ x: null }], refused: [], stored: { input: { x: null }, expected: { x: null } } },
  { keyword: 'pattern', spec: obj({ type: 'string', pattern: '^\\pL+$' }), accepted: [{ x: 'Ünï' }], refused: [{ x: 'a1' }] },
  { keyword: 'minimum', spec: obj({ type: 'integer', minimum: 2 }), accepted: [{ x: 2 }], refused: [{ x: 1 }] },
  { keyword: 'maximum', spec: obj({ type: 'integer', maximum: 2 }), accepted: [{ x: 2 }], refused: [{ x: 3 }] },
  { keyword: 'minLength', spec: obj({ type: 'string', minLength: 2 }), accepted: [{ x: 'ab' }], refused: [{ x: 'a' }] },
  { keyword: 'maxLength', spec: obj({ type: 'string', maxLength: 2 }), accepted: [{ x: 'éé' }], refused: [{ x: 'abc' }] },
  { keyword: 'minItems', spec: obj({ type: 'array', items: str, minItems: 1 }), accepted: [{ x: ['a'] }], refused: [{ x: [] }] },
  { keyword: 'maxItems', spec: obj({ type: 'array', items: str, maxItems: 1 }), accepted: [{ x: ['a'] }], refused: [{ x: ['a', 'b'] }] },
  { keyword: 'x-kubernetes-preserve-unknown-fields', spec: obj({ type: 'object', 'x-kubernetes-preserve-unknown-fields': true }), accepted: [{ x: { any: 1 } }], refused: [], stored: { input: { x: { any: 1 } }, expected: { x: { any: 1 } } } },
  { keyword: 'x-kubernetes-int-or-string', spec: obj({ 'x-kubernetes-int-or-string': true }), accepted: [{ x: 1 }, { x: '50%' }], refused: [{ x: true }, { x: 1.5 }] },
  {
    keyword: 'x-kubernetes-embedded-resource',
    spec: obj({ type: 'object', 'x-kubernetes-embedded-resource': true, 'x-kubernetes-preserve-unknown-fields': true }),
    accepted: [{ x: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'cm' } } }],
    refused: [{ x: { kind: 'ConfigMap' } }, { x: { apiVersion: 'a/b/c', kind: 'ConfigMap' } }, { x: { apiVersion: 'v1', kind: 'Config_Map' } }],
  },
  { keyword: 'x-kubernetes-list-type', spec: obj({ type: 'array', items: str, 'x-kubernetes-list-type': 'set' }), accepted: [{ x: ['a', 'b'] }], refused: [{ x: ['a', 'a'] }] },
  {
    keyword: 'x-kubernetes-list-map-keys',
    spec: obj({ type: 'array', 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['name'], items: { type: 'object', required: ['name'], properties: { name: str, v: str } } }),
    accepted: [{ x: [{ name: 'a', v: '1' }, { name: 'b', v: '1' }] }],
    refused: [{ x: [{ name: 'a', v: '1' }, { name: 'a', v: '2' }] }],
  },
  { keyword: 'x-kubernetes-map-type', spec: obj({ type: 'object', additionalProperties: str, 'x-kubernetes-map-type': 'atomic' }), accepted: [{ x: { a: 'b' } }], refused: [] },
  { keyword: 'x-kubernetes-validations', spec: obj({ type: 'integer', 'x-kubernetes-validations': [{ rule: 'self % 2 == 0', message: 'must be even' }] }), accepted: [{ x: 2 }], refused: [{ x: 3 }] },
];

describe('the field lists of apis/features.ts are the fields apis/types.ts declares', () => {
  test.each([
    ['KindDefinition', KIND_FIELDS],
    ['KindVersion', VERSION_FIELDS],
    ['JSONSchemaProps', SCHEMA_KEYWORDS],
    ['ValidationRule', RULE_FIELDS],
    ['PrinterColumn', PRINTER_COLUMN_FIELDS],
    ['ScaleSubresource', SCALE_FIELDS],
    ['Subresources', SUBRESOURCE_FIELDS],
  ] as const)('%s', (name, listed) => {
    // GIVEN the interface's declared fields WHEN compared with the shared list THEN equal
    expect([...listed].sort()).toEqual(declaredFields(name).sort());
  });

  test('every schema keyword has a parity row below', () => {
    // GIVEN the table WHEN its keywords are listed THEN every keyword is covered
    expect(KEYWORD_ROWS.map((r) => r.keyword).sort()).toEqual([...SCHEMA_KEYWORDS].sort());
  });
});

describe('schema keywords: the CRD carries the keyword, the server gives kube-apiserver\'s verdicts', () => {
  test.each(KEYWORD_ROWS.map((row) => [row.keyword, row] as const))('%s', async (keyword, row) => {
    // GIVEN a definition whose spec uses the keyword
    const api = definition({}, {}, row.spec);
    expect(unsupportedFeatures(api)).toEqual([]);

    // WHEN the CRD is synthesized THEN it carries the keyword with the definition's value
    const crdSpec = crdSpecSchema(crdOf(api));
    const holder = (row.spec.properties?.x ? (crdSpec.properties as Record<string, Json>).x : crdSpec) as Json;
    const source = (row.spec.properties?.x ?? row.spec) as Json;
    expect(holder[keyword]).toEqual(source[keyword]);

    // WHEN objects are created through the server THEN accepted and refused as kube-apiserver would
    await withServer(api, async (server) => {
      for (const spec of row.accepted) expect({ spec, status: (await create(server, spec)).status }).toEqual({ spec, status: 201 });
      for (const spec of row.refused) expect({ spec, status: (await create(server, spec)).status }).toEqual({ spec, status: 422 });
      if (row.stored) expect((await create(server, row.stored.input)).body.spec).toEqual(row.stored.expected);
    });
  });
});

describe('validation rule fields: emitted in the CRD, honoured by the server', () => {
  const rules = (rule: Json) => definition({}, {}, obj({ type: 'integer', 'x-kubernetes-validations': [rule as never] }));

  test.each([
    ['rule', { rule: 'self > 0' }, 0, 'Invalid value: "integer": failed rule: self > 0'],
    ['message', { rule: 'self > 0', message: 'must be positive' }, 0, 'Invalid value: "integer": must be positive'],
    ['messageExpression', { rule: 'self > 0', messageExpression: "'got ' + string(self)" }, 0, 'Invalid value: "integer": got 0'],
    ['reason', { rule: 'self > 0', reason: 'FieldValueForbidden' }, 0, 'Forbidden: failed rule: self > 0'],
  ] as const)('%s', async (field, rule, value, message) => {
    // GIVEN a rule using the field
    const api = rules(rule);
    // THEN the CRD carries it
    expect(((crdSpecSchema(crdOf(api)).properties as Record<string, Json>).x['x-kubernetes-validations'] as Json[])[0][field]).toEqual(rule[field as keyof typeof rule]);
    // AND the server's 422 says what kube-apiserver says
    await withServer(api, async (server) => {
      const reply = await create(server, { x: value });
      expect(reply.status).toBe(422);
      expect(((reply.body.details as Json).causes as Json[])[0].message).toBe(message);
    });
  });

  test('fieldPath: emitted, and the cause points there', async () => {
    // GIVEN a rule on spec pointing at .x
    const api = definition({}, {}, obj({ type: 'integer' }, { 'x-kubernetes-validations': [{ rule: 'self.x > 0', fieldPath: '.x' }] }));
    expect((crdSpecSchema(crdOf(api))['x-kubernetes-validations'] as Json[])[0].fieldPath).toBe('.x');
    await withServer(api, async (server) => {
      const reply = await create(server, { x: 0 });
      expect(((reply.body.details as Json).causes as Json[])[0].field).toBe('spec.x');
    });
  });

  test('optionalOldSelf: emitted (the L1 binding drops it; the construct puts it back), and the rule runs on create', async () => {
    // GIVEN a transition rule with optionalOldSelf, at the root of spec and on a property
    const api = definition({}, {}, obj({ type: 'integer', 'x-kubernetes-validations': [{ rule: 'oldSelf.hasValue() || self == 1', optionalOldSelf: true, message: 'starts at 1' }] }));
    // THEN the CRD carries optionalOldSelf
    expect(((crdSpecSchema(crdOf(api)).properties as Record<string, Json>).x['x-kubernetes-validations'] as Json[])[0].optionalOldSelf).toBe(true);
    // AND the server runs the rule on create
    await withServer(api, async (server) => {
      expect((await create(server, { x: 1 })).status).toBe(201);
      expect((await create(server, { x: 2 })).status).toBe(422);
    });
  });
});

describe('kind and version fields', () => {
  test('names, short names, categories, scope and listKind: in the CRD and in discovery', async () => {
    // GIVEN a kind with every naming field
    const api = definition({}, { shortNames: ['th'], categories: ['all'], listKind: 'ThingCollection' });
    const crd = crdOf(api);
    // THEN the CRD names them
    expect((crd.spec as Json).names).toEqual({ kind: 'Thing', listKind: 'ThingCollection', plural: 'things', singular: 'thing', shortNames: ['th'], categories: ['all'] });
    expect((crd.spec as Json).scope).toBe('Namespaced');
    // AND discovery and lists use them
    const list = JSON.parse(discovery(api, `/apis/${GROUP}/v1`)) as { resources: Json[] };
    expect(list.resources[0]).toMatchObject({ name: 'things', singularName: 'thing', namespaced: true, kind: 'Thing', shortNames: ['th'], categories: ['all'] });
    await withServer(api, async (server) => expect((await server.get(THINGS)).body.kind).toBe('ThingCollection'));
  });

  test('served and storage: a version not served is neither in the CRD as served nor in discovery', () => {
    // GIVEN v1 stored and v2 not served
    const api: ApiGroupDefinition = { ...definition(), kinds: [{ ...definition().kinds[0], versions: [definition().kinds[0].versions[0], { ...definition().kinds[0].versions[0], name: 'v2', served: false, storage: false }] }] };
    const versions = (crdOf(api).spec as Json).versions as Json[];
    expect(versions.map((v) => [v.name, v.served, v.storage])).toEqual([['v1', true, true], ['v2', false, false]]);
    expect((JSON.parse(discovery(api, `/apis/${GROUP}`)) as { versions: Json[] }).versions.map((v) => v.version)).toEqual(['v1']);
  });

  test('subresources: status and scale in the CRD, served by the server, granted by the RBAC', async () => {
    // GIVEN a kind with both subresources
    const scale = { specReplicasPath: '.spec.replicas', statusReplicasPath: '.status.replicas' };
    const api = definition({ subresources: { status: true, scale } }, {}, obj({ type: 'integer' }, { properties: { replicas: { type: 'integer' } } }));
    // THEN the CRD declares them
    expect(crdVersion(crdOf(api)).subresources).toEqual({ status: {}, scale });
    // AND the server serves them
    await withServer(api, async (server) => {
      expect((await create(server, { replicas: 2 })).status).toBe(201);
      const name = `t${counter}`;
      expect((await server.get(`${THINGS}/${name}/status`)).status).toBe(200);
      expect((await server.get(`${THINGS}/${name}/scale`)).body).toMatchObject({ kind: 'Scale', spec: { replicas: 2 } });
    });
    // AND the roles grant exactly them
    const chart = Testing.chart();
    new ApiResourceRoles(chart, 'roles', { api });
    const granted = Testing.synth(chart).flatMap((role) => (role.rules as Json[]).flatMap((rule) => rule.resources as string[]));
    expect([...new Set(granted)].sort()).toEqual(['things', 'things/scale', 'things/status']);
  });

  test('fails to grant a subresource the kind does not have: no scale, no things/scale in any role', () => {
    // GIVEN a kind without subresources WHEN the roles are synthesized
    const chart = Testing.chart();
    new ApiResourceRoles(chart, 'roles', { api: definition() });
    const granted = Testing.synth(chart).flatMap((role) => (role.rules as Json[]).flatMap((rule) => rule.resources as string[]));
    // THEN only the resource itself
    expect([...new Set(granted)]).toEqual(['things']);
  });

  test('x-kubernetes-embedded-resource in OpenAPI: apiVersion, kind (required) and metadata published, as apiextensions\' builder adds them', () => {
    // GIVEN an embedded resource field
    const api = definition({}, {}, obj({ type: 'object', 'x-kubernetes-embedded-resource': true, properties: { data: str } }));
    // WHEN the v3 and v2 documents are read
    const read = (url: string) => {
      let body: Buffer = Buffer.alloc(0);
      const res = { statusCode: 0, setHeader: () => undefined, end: (b?: Buffer) => (body = b ?? body) };
      new OpenApi(api).serve({ headers: { accept: 'application/json' }, method: 'GET', url } as never, res as never, url);
      return JSON.parse(body.toString()) as Json;
    };
    const v3 = ((read(`/openapi/v3/apis/${GROUP}/v1`).components as Json).schemas as Record<string, { properties: Record<string, Json> }>)['com.example.parity.v1.Thing'];
    const v2 = (read('/openapi/v2').definitions as Record<string, { properties: Record<string, Json> }>)['com.example.parity.v1.Thing'];
    // THEN both publish the type and object meta of the embedded object
    for (const doc of [v3, v2]) {
      const x = (doc.properties.spec.properties as Record<string, Json>).x;
      expect(Object.keys(x.properties as Json).sort()).toEqual(['apiVersion', 'data', 'kind', 'metadata']);
      expect(x.required).toEqual(['kind', 'apiVersion']);
    }
  });

  test('printerColumns: in the CRD and in the server\'s Table (name, type, format, description, priority; jsonPath evaluated)', async () => {
    // GIVEN a column with every field
    const column = { name: 'X', type: 'integer' as const, jsonPath: '.spec.x', description: 'the x', format: 'int32', priority: 1 };
    const api = definition({ printerColumns: [column] }, {}, obj({ type: 'integer' }));
    expect(crdVersion(crdOf(api)).additionalPrinterColumns).toEqual([column]);
    await withServer(api, async (server) => {
      await create(server, { x: 7 });
      const table = (await server.get(THINGS, 'application/json;as=Table;v=v1;g=meta.k8s.io')).body as { columnDefinitions: Json[]; rows: { cells: unknown[] }[] };
      expect(table.columnDefinitions[1]).toEqual({ name: 'X', type: 'integer', format: 'int32', description: 'the x', priority: 1 });
      expect(table.rows[0].cells[1]).toBe(7);
    });
  });

  test('deprecated and deprecationWarning: in the CRD, and the server warns on every request to the version', async () => {
    // GIVEN a deprecated version with its own warning
    const api = definition({ deprecated: true, deprecationWarning: 'things are old' });
    expect(crdVersion(crdOf(api))).toMatchObject({ deprecated: true, deprecationWarning: 'things are old' });
    await withServer(api, async (server) => {
      const created = await create(server, {});
      expect(created.headers.warning).toBe('299 - "things are old"');
      // …errors included
      const missing = await server.get(`${THINGS}/nope`);
      expect(missing.status).toBe(404);
      expect(missing.headers.warning).toBe('299 - "things are old"');
    });
    // AND without a text, kube-apiserver's default
    await withServer(definition({ deprecated: true }), async (server) => {
      expect((await server.get(THINGS)).headers.warning).toBe(`299 - "${GROUP}/v1 Thing is deprecated"`);
    });
  });
});

describe('refusals: what the server does not honour is refused on both sides with the same line', () => {
  test.each([
    ['format k8s-short-name (1.34+)', obj({ type: 'string', format: 'k8s-short-name' }), 'kind Thing, version v1, field schema.properties.spec.properties.x.format: format "k8s-short-name" is not supported by the bundled server: kube-apiserver validates it only from 1.34'],
    ['an unrecognized format', obj({ type: 'string', format: 'colour' }), 'format "colour" is not a format kube-apiserver recognizes for type string'],
    ['a format on the wrong type', obj({ type: 'integer', format: 'date' }), 'format "date" is not a format kube-apiserver recognizes for type integer'],
    ['a pattern RE2 cannot compile', obj({ type: 'string', pattern: '(?=a)' }), 'pattern "(?=a)" is not a valid RE2 regular expression'],
    ['a schema keyword outside the types', obj({ type: 'object', minProperties: 1 } as JSONSchemaProps), 'schema keyword "minProperties" is not supported by the bundled server'],
  ])('fails %s', (_name, spec, expected) => {
    // GIVEN a definition with the feature WHEN checked THEN one line names kind, version, field and feature
    const lines = unsupportedFeatures(definition({}, {}, spec)).map(describeUnsupportedFeature);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(expected);
  });

  test('fails a scale path outside .spec / .status, or pointing at a field of the wrong type', () => {
    // GIVEN scale paths that apiextensions refuses
    const wrongRoot = definition({ subresources: { scale: { specReplicasPath: '.status.replicas', statusReplicasPath: '.status.replicas' } } });
    const wrongType = definition({ subresources: { scale: { specReplicasPath: '.spec.x', statusReplicasPath: '.status.replicas' } } }, {}, obj(str));
    // THEN named
    expect(unsupportedFeatures(wrongRoot).map(describeUnsupportedFeature)).toEqual(['kind Thing, version v1, field subresources.scale.specReplicasPath: scale specReplicasPath ".status.replicas" should be a json path under .spec']);
    expect(unsupportedFeatures(wrongType).map(describeUnsupportedFeature)).toEqual(['kind Thing, version v1, field subresources.scale.specReplicasPath: scale specReplicasPath ".spec.x" must point to a field of type integer (the schema says string)']);
  });

  test('fails to construct the AggregatedApiServer that deploys the bundled server, with the same lines; an image of one\'s own is not checked', () => {
    // GIVEN a definition with format k8s-short-name (validated by kube-apiserver 1.34+, not by the bundled server)
    const api = definition({}, {}, obj({ type: 'string', format: 'k8s-short-name' }));
    const deploy = (bundledServer?: boolean) =>
      new AggregatedApiServer(Testing.chart(), 'server', { api, name: 'wardle-apiserver', namespace: 'wardle', certificates: fixtureCertificates(), storage: Storage.memory(), ...(bundledServer === undefined ? {} : { bundledServer }) });
    // WHEN the construct deploys the bundled server THEN it throws the server's line
    expect(() => deploy()).toThrow(
      'AggregatedApiServer api "parity.example.com" (bundledServer: false for an image that is not the bundled server): the bundled server does not support this feature of the definition:\n' +
        '  - kind Thing, version v1, field schema.properties.spec.properties.x.format: format "k8s-short-name" is not supported by the bundled server: kube-apiserver validates it only from 1.34 (ignored before); the bundled server does not',
    );
    // AND for an image of one's own it builds
    expect(() => deploy(false)).not.toThrow();
  });

  test('the construct hands its definition to the bundled server: a ConfigMap with api.json, mounted, --api-definition-file, a checksum that rolls the pods', () => {
    // GIVEN an AggregatedApiServer for a definition of one's own
    const api = definition({ subresources: { scale: { specReplicasPath: '.spec.replicas', statusReplicasPath: '.status.replicas' } } }, {}, obj({ type: 'integer' }, { properties: { replicas: { type: 'integer' } } }));
    const chart = Testing.chart();
    new AggregatedApiServer(chart, 'server', { api, name: 'wardle-apiserver', namespace: 'wardle', certificates: fixtureCertificates(), storage: Storage.memory() });
    const objects = Testing.synth(chart) as Json[];
    // WHEN its objects are read
    const configMap = objects.find((o) => o.kind === 'ConfigMap' && (o.metadata as Json).name === 'wardle-apiserver-api-definition') as Json;
    const deployment = objects.find((o) => o.kind === 'Deployment') as { spec: { template: { metadata: { annotations: Json }; spec: { containers: { args: string[]; volumeMounts: Json[] }[]; volumes: Json[] } } } };
    // THEN the server reads exactly the definition the construct was given
    expect(JSON.parse((configMap.data as Record<string, string>)['api.json'])).toEqual(api);
    const [container] = deployment.spec.template.spec.containers;
    expect(container.args).toContain('--api-definition-file=/etc/apiserver/api-definition/api.json');
    expect(container.volumeMounts).toContainEqual({ mountPath: '/etc/apiserver/api-definition', name: 'api-definition', readOnly: true });
    expect(deployment.spec.template.metadata.annotations['apiextension.cdk8s.io/api-definition-sha256']).toMatch(/^[0-9a-f]{64}$/);
  });

  test('fails to build the registry (server start) with the same lines', async () => {
    // GIVEN a definition with format k8s-short-name WHEN the server's registry is built THEN it throws naming it
    await expect(RegistryServer.start({ api: definition({}, {}, obj({ type: 'string', format: 'k8s-short-name' })), rules: {}, admission: [] })).rejects.toThrow(
      'kind Thing, version v1, field schema.properties.spec.properties.x.format: format "k8s-short-name" is not supported by the bundled server',
    );
  });
});

function discovery(api: ApiGroupDefinition, pathName: string): string {
  let body: Buffer = Buffer.alloc(0);
  const res = { statusCode: 0, setHeader: () => undefined, end: (b?: Buffer) => (body = b ?? body) };
  new Discovery(api).serve({ headers: { accept: 'application/json' }, method: 'GET' } as never, res as never, pathName);
  return body.toString();
}
