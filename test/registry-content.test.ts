import { RESOURCE_OFFERS, negotiate, parseAccept } from '../server/content';
import { humanDuration } from '../server/registry/table';
import { FISCHERS, FLUNDERS, FLUNDERS_BETA, RegistryServer, flunder } from './support/registry-server';

const TABLE_V1 = 'application/json;as=Table;v=v1;g=meta.k8s.io';
/** What kubectl get sends. */
const KUBECTL_GET = 'application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json';
/** What the metadata client (garbage collector, namespace controller) sends for a list. */
const METADATA_LIST =
  'application/vnd.kubernetes.protobuf;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json';

describe('Accept negotiation', () => {
  test('protobuf first, JSON next: JSON is chosen', () => {
    const chosen = negotiate(parseAccept(METADATA_LIST), RESOURCE_OFFERS.list);
    expect(chosen?.value).toEqual({ as: 'PartialObjectMetadataList', version: 'v1' });
  });

  test('q values order the clauses; an absent header means anything', () => {
    expect(negotiate(parseAccept('application/json;q=0.5, application/json;as=Table;v=v1;g=meta.k8s.io'), RESOURCE_OFFERS.list)?.value).toEqual({ as: 'Table', version: 'v1' });
    expect(negotiate(parseAccept(undefined), RESOURCE_OFFERS.object)?.value).toEqual({ as: 'Object' });
    expect(negotiate(parseAccept('*/*'), RESOURCE_OFFERS.object)?.value).toEqual({ as: 'Object' });
  });

  test('a transform that does not fit the request is not chosen', () => {
    expect(negotiate(parseAccept('application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1'), RESOURCE_OFFERS.object)).toBeUndefined();
    expect(negotiate(parseAccept('application/json;as=Table;v=v2;g=meta.k8s.io'), RESOURCE_OFFERS.list)).toBeUndefined();
    expect(negotiate(parseAccept('application/vnd.kubernetes.protobuf'), RESOURCE_OFFERS.object)).toBeUndefined();
  });
});

describe('humanDuration (apimachinery duration.HumanDuration)', () => {
  test.each([
    [0, '0s'],
    [59_000, '59s'],
    [119_000, '119s'],
    [125_000, '2m5s'],
    [600_000, '10m'],
    [3 * 3600_000 + 5 * 60_000, '3h5m'],
    [10 * 3600_000, '10h'],
    [50 * 3600_000, '2d2h'],
    [400 * 86400_000, '400d'],
    [3 * 365 * 86400_000, '3y'],
  ])('%d ms → %s', (ms, text) => {
    expect(humanDuration(ms)).toBe(text);
  });
});

describe('representations', () => {
  let server: RegistryServer;

  beforeEach(async () => {
    server = await RegistryServer.start();
    await server.post(FLUNDERS, flunder('a', { reference: 'ra' }, { labels: { x: 'y' } }));
    await server.post(FLUNDERS, flunder('b', { reference: 'rb', referenceType: 'Fischer' }));
  });

  afterEach(async () => {
    await server.close();
  });

  test('a list as a Table for kubectl get: Name, printer columns, Age; rows with PartialObjectMetadata', async () => {
    // WHEN
    const reply = await server.get(FLUNDERS, KUBECTL_GET);

    // THEN
    expect(reply.status).toBe(200);
    expect(reply.headers['content-type']).toBe('application/json');
    const table = reply.body;
    expect(table.kind).toBe('Table');
    expect(table.apiVersion).toBe('meta.k8s.io/v1');
    expect(table.metadata.resourceVersion).toMatch(/^\d+$/);
    expect(table.columnDefinitions).toEqual([
      expect.objectContaining({ name: 'Name', type: 'string', format: 'name', priority: 0 }),
      { name: 'Reference-Type', type: 'string', format: '', description: 'The type of the reference: Flunder or Fischer.', priority: 0 },
      { name: 'Reference', type: 'string', format: '', description: '', priority: 0 },
      expect.objectContaining({ name: 'Age', type: 'date', priority: 0 }),
    ]);
    expect(table.rows.map((r: { cells: unknown[] }) => r.cells)).toEqual([
      ['a', 'Flunder', 'ra', expect.stringMatching(/^\d+s$/)],
      ['b', 'Fischer', 'rb', expect.stringMatching(/^\d+s$/)],
    ]);
    expect(table.rows[0].object).toEqual({ kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: expect.objectContaining({ name: 'a', labels: { x: 'y' } }) });
  });

  test('a Table of v1beta1 Flunders uses that version’s columns; priority-1 columns are -o wide', async () => {
    const reply = await server.get(FLUNDERS_BETA, TABLE_V1);
    expect(reply.body.columnDefinitions.map((c: { name: string; priority: number }) => `${c.name}:${c.priority}`)).toEqual([
      'Name:0',
      'Reference-Type:0',
      'Flunder-Reference:1',
      'Fischer-Reference:1',
      'Age:0',
    ]);
    expect(reply.body.rows[1].cells.slice(0, 4)).toEqual(['b', 'Fischer', null, 'rb']);
  });

  test('a single object as a Table; includeObject=Object embeds the object, None leaves it out', async () => {
    const one = await server.get(`${FLUNDERS}/a`, TABLE_V1);
    expect(one.body.rows).toHaveLength(1);
    expect(one.body.metadata.resourceVersion).toMatch(/^\d+$/);
    const full = await server.get(`${FLUNDERS}/a?includeObject=Object`, TABLE_V1);
    expect(full.body.rows[0].object).toMatchObject({ kind: 'Flunder', apiVersion: 'wardle.example.com/v1alpha1', spec: { reference: 'ra' } });
    const none = await server.get(`${FLUNDERS}/a?includeObject=None`, TABLE_V1);
    expect(none.body.rows[0].object).toBeUndefined();
    expect((await server.get(`${FLUNDERS}/a?includeObject=Everything`, TABLE_V1)).status).toBe(400);
  });

  test('meta.k8s.io/v1beta1 Table', async () => {
    const reply = await server.get(FLUNDERS, 'application/json;as=Table;v=v1beta1;g=meta.k8s.io');
    expect(reply.body.apiVersion).toBe('meta.k8s.io/v1beta1');
    expect(reply.body.rows[0].object.apiVersion).toBe('meta.k8s.io/v1beta1');
  });

  test('a cluster-scoped kind without printer columns: Name and Age', async () => {
    await server.post(FISCHERS, { metadata: { name: 'fi' }, disallowedFlunders: [] });
    const reply = await server.get(FISCHERS, TABLE_V1);
    expect(reply.body.columnDefinitions.map((c: { name: string }) => c.name)).toEqual(['Name', 'Age']);
    expect(reply.body.rows[0].cells[0]).toBe('fi');
  });

  test('PartialObjectMetadataList for a list, PartialObjectMetadata for one object', async () => {
    const list = await server.get(FLUNDERS, METADATA_LIST);
    expect(list.status).toBe(200);
    expect(list.body).toEqual({
      kind: 'PartialObjectMetadataList',
      apiVersion: 'meta.k8s.io/v1',
      metadata: { resourceVersion: expect.stringMatching(/^\d+$/) },
      items: [
        { kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: expect.objectContaining({ name: 'a', namespace: 'ns1' }) },
        { kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: expect.objectContaining({ name: 'b' }) },
      ],
    });
    expect(list.body.items[0].spec).toBeUndefined();
    const one = await server.get(`${FLUNDERS}/a`, 'application/vnd.kubernetes.protobuf;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json');
    expect(one.body.kind).toBe('PartialObjectMetadata');
    expect(one.body.metadata.name).toBe('a');
  });

  test('PartialObjectMetadataList paginates like the list it stands for', async () => {
    const first = await server.get(`${FLUNDERS}?limit=1`, METADATA_LIST);
    expect(first.body.items).toHaveLength(1);
    expect(first.body.metadata.continue).toBeTruthy();
    expect(first.body.metadata.remainingItemCount).toBe(1);
  });

  test('fails with 406 NotAcceptable for an Accept it cannot satisfy; never answers protobuf', async () => {
    const proto = await server.get(FLUNDERS, 'application/vnd.kubernetes.protobuf');
    expect(proto.status).toBe(406);
    expect(proto.headers['content-type']).toBe('application/json');
    expect(proto.body).toMatchObject({ kind: 'Status', reason: 'NotAcceptable', code: 406 });
    expect(proto.body.message).toMatch(/^only the following media types are accepted: application\/json/);
    expect((await server.get(FLUNDERS, 'text/html')).status).toBe(406);
    expect((await server.get(`${FLUNDERS}/a`, 'application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1')).status).toBe(406);
  });
});
