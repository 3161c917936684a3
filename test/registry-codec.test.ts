import { FLUNDER } from '../apis/wardle';
import { KindCodec } from '../server/registry';
import { flunderRules, wardleRules } from '../server/registry/wardle';
import type { KubeObject } from '../server/registry/rules';
import { MemoryStorage } from '../server/storage/memory';
import { FLUNDERS, FLUNDERS_BETA, RegistryServer, flunder } from './support/registry-server';

/** A stored value as MemoryStorage hands it out: deep-frozen, resourceVersion set. */
async function storedFlunder(storage: MemoryStorage, name: string, spec: Record<string, unknown>) {
  const created = await storage.create(`/wardle.example.com/flunders/ns1/${name}`, {
    apiVersion: 'wardle.example.com/v1alpha1',
    kind: 'Flunder',
    metadata: { name, namespace: 'ns1', labels: { app: 'x' } },
    spec,
  });
  return created.value;
}

describe('KindCodec.storedJson (the serialization cache)', () => {
  test('a frozen stored value is converted and serialized once per form, then served from the cache', async () => {
    // GIVEN a codec whose conversion is counted
    const fromInternal = jest.fn(flunderRules.fromInternal!);
    const codec = new KindCodec('wardle.example.com', FLUNDER, { ...flunderRules, fromInternal });
    const value = await storedFlunder(new MemoryStorage(), 'a', { reference: 'r', referenceType: 'Flunder' });

    // WHEN it is read twice in the other version, and as PartialObjectMetadata
    const beta = codec.storedJson(value, 'v1beta1');
    const betaAgain = codec.storedJson(value, 'v1beta1');
    const partial = codec.storedJson(value, 'v1beta1', 'v1');

    // THEN the conversion ran once for the object form and once for the partial form, and the texts are right
    expect(fromInternal).toHaveBeenCalledTimes(2);
    expect(codec.storedJson(value, 'v1beta1')).toBe(beta);
    expect(fromInternal).toHaveBeenCalledTimes(2);
    expect(JSON.parse(beta)).toEqual(codec.fromStorage(value, 'v1beta1'));
    expect(JSON.parse(beta)).toMatchObject({ apiVersion: 'wardle.example.com/v1beta1', spec: { flunderReference: 'r' } });
    expect(betaAgain).toBe(beta);
    expect(JSON.parse(partial)).toEqual({ kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: value.metadata });
  });

  test('the storage version is the value itself, serialized', async () => {
    const codec = new KindCodec('wardle.example.com', FLUNDER, flunderRules);
    const value = await storedFlunder(new MemoryStorage(), 'a', {});
    expect(codec.storedJson(value, 'v1alpha1')).toBe(JSON.stringify(value));
  });

  test('a value that is not frozen (a dry run, a synthetic watch event) is serialized every time, never cached', () => {
    // GIVEN a mutable object
    const codec = new KindCodec('wardle.example.com', FLUNDER, flunderRules);
    const value: Record<string, unknown> = { apiVersion: 'wardle.example.com/v1alpha1', kind: 'Flunder', metadata: { name: 'a', resourceVersion: '5' } };
    const before = codec.storedJson(value, 'v1alpha1');

    // WHEN it changes
    value.spec = { reference: 'later' };

    // THEN the next text shows the change
    expect(JSON.parse(before).spec).toBeUndefined();
    expect(JSON.parse(codec.storedJson(value, 'v1alpha1')).spec).toEqual({ reference: 'later' });
  });
});

describe('KindCodec.storedBytes (the UTF-8 cache list bodies copy)', () => {
  test('a frozen value\'s bytes are its text in UTF-8, encoded once per form', async () => {
    // GIVEN a stored value with non-ASCII text, read as text in one form
    const codec = new KindCodec('wardle.example.com', FLUNDER, flunderRules);
    const value = await storedFlunder(new MemoryStorage(), 'a', { reference: 'größe ✓' });
    const text = codec.storedJson(value, 'v1beta1');

    // WHEN its bytes are asked for twice in that form, and once as PartialObjectMetadata
    const bytes = codec.storedBytes(value, 'v1beta1');
    const partial = codec.storedBytes(value, 'v1beta1', 'v1');

    // THEN the same Buffer each time, equal to the texts encoded, each its own allocation (no pool slab kept alive)
    expect(codec.storedBytes(value, 'v1beta1')).toBe(bytes);
    expect(bytes.equals(Buffer.from(text))).toBe(true);
    expect(partial.toString()).toBe(codec.storedJson(value, 'v1beta1', 'v1'));
    expect(bytes.byteOffset).toBe(0);
    expect(bytes.buffer.byteLength).toBe(bytes.length);
  });

  test('a value that is not frozen is encoded every time, never cached', () => {
    // GIVEN a mutable object encoded once
    const codec = new KindCodec('wardle.example.com', FLUNDER, flunderRules);
    const value: Record<string, unknown> = { apiVersion: 'wardle.example.com/v1alpha1', kind: 'Flunder', metadata: { name: 'a', resourceVersion: '5' } };
    const before = codec.storedBytes(value, 'v1alpha1');

    // WHEN it changes
    value.spec = { reference: 'later' };

    // THEN the next bytes show the change
    expect(JSON.parse(before.toString()).spec).toBeUndefined();
    expect(JSON.parse(codec.storedBytes(value, 'v1alpha1').toString()).spec).toEqual({ reference: 'later' });
  });
});

describe('which answers are cached', () => {
  test('reads are served from the cache; the answer to a write is serialized without caching', async () => {
    // GIVEN a server counting conversions to v1beta1 (Flunders are stored as v1alpha1)
    const toBeta: string[] = [];
    const fromInternal = (internal: Readonly<KubeObject>, version: string): KubeObject => {
      if (version === 'v1beta1') toBeta.push(String((internal.metadata as { resourceVersion?: string }).resourceVersion));
      return flunderRules.fromInternal!(internal, version);
    };
    const server = await RegistryServer.start({ rules: { ...wardleRules, Flunder: { ...flunderRules, fromInternal } } });
    try {
      // WHEN a Flunder is created in v1beta1, then read three times in v1beta1
      const created = await server.post(FLUNDERS_BETA, { ...flunder('c'), apiVersion: 'wardle.example.com/v1beta1' });
      expect(created.status).toBe(201);
      const rv = created.body.metadata.resourceVersion;
      await server.get(`${FLUNDERS_BETA}/c`);
      await server.get(`${FLUNDERS_BETA}/c`);
      await server.get(FLUNDERS_BETA);

      // THEN the create's answer and the first read converted it; the other reads used the cache
      expect(toBeta).toEqual([rv, rv]);
    } finally {
      await server.close();
    }
  });
});

describe('LIST and GET bodies built from cached texts', () => {
  let server: RegistryServer;

  beforeEach(async () => {
    server = await RegistryServer.start();
  });

  afterEach(async () => {
    await server.close();
  });

  test('after an update, lists and GETs in both versions show the new object, never a cached old text', async () => {
    // GIVEN an object read once in each version and form (so cached)
    await server.post(FLUNDERS, flunder('a', { reference: 'old' }));
    const forms = async () => ({
      alpha: (await server.get(FLUNDERS)).body.items[0],
      beta: (await server.get(FLUNDERS_BETA)).body.items[0],
      betaGet: (await server.get(`${FLUNDERS_BETA}/a`)).body,
      partial: (await server.get(FLUNDERS, 'application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io')).body.items[0],
    });
    await forms();

    // WHEN it is updated
    const updated = await server.patch(`${FLUNDERS}/a`, { metadata: { labels: { l: 'new' } }, spec: { reference: 'new' } }, 'application/merge-patch+json');
    expect(updated.status).toBe(200);

    // THEN every form shows the update
    const after = await forms();
    expect(after.alpha).toEqual(updated.body);
    expect(after.beta).toMatchObject({ apiVersion: 'wardle.example.com/v1beta1', metadata: { resourceVersion: updated.body.metadata.resourceVersion }, spec: { flunderReference: 'new' } });
    expect(after.betaGet).toEqual(after.beta);
    expect(after.partial).toEqual({ kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: updated.body.metadata });
  });

  test('the list envelope keeps Kubernetes’ key order and Content-Length counts bytes, not characters', async () => {
    // GIVEN an object with a non-ASCII annotation
    await server.post(FLUNDERS, flunder('u', {}, { annotations: { note: 'größe ✓' } }));

    // WHEN listed as objects and as PartialObjectMetadataList
    const list = await server.get(FLUNDERS);
    const partial = await server.get(FLUNDERS, 'application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io');

    // THEN
    expect(Object.keys(list.body)).toEqual(['apiVersion', 'kind', 'metadata', 'items']);
    expect(list.body).toMatchObject({ apiVersion: 'wardle.example.com/v1alpha1', kind: 'FlunderList', items: [{ metadata: { annotations: { note: 'größe ✓' } } }] });
    expect(Number(list.headers['content-length'])).toBe(Buffer.byteLength(list.text));
    expect(Object.keys(partial.body)).toEqual(['kind', 'apiVersion', 'metadata', 'items']);
    expect(partial.body.items[0].metadata.annotations).toEqual({ note: 'größe ✓' });
    expect(Number(partial.headers['content-length'])).toBe(Buffer.byteLength(partial.text));
  });
});
