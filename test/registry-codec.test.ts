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

describe('KindCodec.listItemsBytes (a listing\'s items, kept while it lists the same values)', () => {
  async function storedFlunders(storage: MemoryStorage, count: number, prefix = 'f') {
    const values = [];
    for (let i = 0; i < count; i++) values.push(await storedFlunder(storage, `${prefix}${String(i).padStart(3, '0')}`, { reference: `r${i}` }));
    return values;
  }
  const parse = (bytes: Buffer) => JSON.parse(`[${bytes.toString()}`.slice(0, -1));

  test('the same values listed again under one listing are answered with the same bytes', async () => {
    // GIVEN 20 stored values listed once under a listing
    const codec = new KindCodec('wardle.example.com', FLUNDER, flunderRules);
    const values = await storedFlunders(new MemoryStorage(), 20);
    const first = codec.listItemsBytes(values, 'v1beta1', undefined, '/list?a');

    // WHEN the same values (a new array) are listed again, and as PartialObjectMetadata
    const again = codec.listItemsBytes([...values], 'v1beta1', undefined, '/list?a');
    const partial = codec.listItemsBytes(values, 'v1beta1', 'v1', '/list?a');

    // THEN the bytes are kept, are each value's bytes joined, and the other form has its own
    expect(again).toBe(first);
    expect(first.toString()).toBe(`${values.map((v) => codec.storedJson(v, 'v1beta1')).join(',')}]}`);
    expect(parse(partial).map((p: { kind: string }) => p.kind)).toEqual(values.map(() => 'PartialObjectMetadata'));
  });

  test('a changed, added or removed value gives new bytes; small lists and lists without a listing are not kept', async () => {
    // GIVEN 20 stored values listed once
    const storage = new MemoryStorage();
    const codec = new KindCodec('wardle.example.com', FLUNDER, flunderRules);
    const values = await storedFlunders(storage, 20);
    const first = codec.listItemsBytes(values, 'v1alpha1', undefined, '/list');

    // WHEN one is updated (a new stored value), one added, one removed
    const updated = await storage.update('/wardle.example.com/flunders/ns1/f005', { ...values[5], spec: { reference: 'changed' } }, Number((values[5].metadata as { resourceVersion: string }).resourceVersion));
    const changed = codec.listItemsBytes([...values.slice(0, 5), updated.value, ...values.slice(6)], 'v1alpha1', undefined, '/list');
    const added = codec.listItemsBytes([...values, ...(await storedFlunders(storage, 1, 'g'))], 'v1alpha1', undefined, '/list');
    const removed = codec.listItemsBytes(values.slice(1), 'v1alpha1', undefined, '/list');

    // THEN each is encoded anew and shows the change
    expect(changed).not.toBe(first);
    expect(parse(changed)[5].spec).toEqual({ reference: 'changed' });
    expect(parse(added)).toHaveLength(21);
    expect(parse(removed)).toHaveLength(19);
    // AND a list below 16 items, or without a listing, is encoded every time
    expect(codec.listItemsBytes(values.slice(0, 15), 'v1alpha1', undefined, '/small')).not.toBe(codec.listItemsBytes(values.slice(0, 15), 'v1alpha1', undefined, '/small'));
    expect(codec.listItemsBytes(values, 'v1alpha1')).not.toBe(codec.listItemsBytes(values, 'v1alpha1'));
    // AND an empty list is the closing alone
    expect(codec.listItemsBytes([], 'v1alpha1', undefined, '/empty').toString()).toBe(']}');
  });

  test('values that are not frozen are never kept', async () => {
    // GIVEN 16 mutable objects listed once
    const codec = new KindCodec('wardle.example.com', FLUNDER, flunderRules);
    const values: Record<string, unknown>[] = Array.from({ length: 16 }, (_, i) => ({ apiVersion: 'wardle.example.com/v1alpha1', kind: 'Flunder', metadata: { name: `m${i}`, resourceVersion: '5' } }));
    const before = codec.listItemsBytes(values, 'v1alpha1', undefined, '/mutable');

    // WHEN one changes in place and they are listed again
    values[0].spec = { reference: 'later' };
    const after = codec.listItemsBytes(values, 'v1alpha1', undefined, '/mutable');

    // THEN the change shows
    expect(parse(before)[0].spec).toBeUndefined();
    expect(parse(after)[0].spec).toEqual({ reference: 'later' });
  });

  test('at most 64 listings are kept, the least recently used dropped first', async () => {
    // GIVEN 65 listings of the same 16 values, the first one used again after the others
    const codec = new KindCodec('wardle.example.com', FLUNDER, flunderRules);
    const values = await storedFlunders(new MemoryStorage(), 16);
    const kept = Array.from({ length: 64 }, (_, i) => codec.listItemsBytes(values, 'v1alpha1', undefined, `/l${i}`));
    expect(codec.listItemsBytes(values, 'v1alpha1', undefined, '/l0')).toBe(kept[0]);

    // WHEN a 65th listing is kept
    codec.listItemsBytes(values, 'v1alpha1', undefined, '/l64');

    // THEN the least recently used (/l1) was dropped, /l0 and /l2 are still kept
    expect(codec.listItemsBytes(values, 'v1alpha1', undefined, '/l0')).toBe(kept[0]);
    expect(codec.listItemsBytes(values, 'v1alpha1', undefined, '/l2')).toBe(kept[2]);
    expect(codec.listItemsBytes(values, 'v1alpha1', undefined, '/l1')).not.toBe(kept[1]);
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

  test('a kept list of 20 shows a write at once: the new resourceVersion and the changed item', async () => {
    // GIVEN 20 Flunders, listed twice (the second answer comes from the kept bytes)
    for (let i = 0; i < 20; i++) await server.post(FLUNDERS, flunder(`k${String(i).padStart(2, '0')}`, { reference: 'old' }));
    await server.get(FLUNDERS);
    const before = await server.get(FLUNDERS);

    // WHEN one is patched, and the list read again
    const patched = await server.patch(`${FLUNDERS}/k07`, { spec: { reference: 'new' } }, 'application/merge-patch+json');
    const after = await server.get(FLUNDERS);

    // THEN the list has the write's resourceVersion and the patched item, and its length is right
    expect(after.body.metadata.resourceVersion).toBe(patched.body.metadata.resourceVersion);
    expect(after.body.metadata.resourceVersion).not.toBe(before.body.metadata.resourceVersion);
    expect(after.body.items[7]).toEqual(patched.body);
    expect(after.body.items.filter((item: { spec: { reference: string } }) => item.spec.reference === 'new')).toHaveLength(1);
    expect(Number(after.headers['content-length'])).toBe(Buffer.byteLength(after.text));
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
