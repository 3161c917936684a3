import { ApiGroupDefinition, compareKubeVersions, preferredVersion, servedVersions, validateApiGroupDefinition, WARDLE } from '../apis';

describe('validateApiGroupDefinition', () => {
  test('accepts the bundled wardle definition', () => {
    expect(() => validateApiGroupDefinition(WARDLE)).not.toThrow();
  });

  test('fails for a group without a dot', () => {
    // GIVEN
    const api: ApiGroupDefinition = { ...WARDLE, group: 'wardle' };
    // THEN
    expect(() => validateApiGroupDefinition(api)).toThrow(/group "wardle" is not a DNS subdomain with at least one dot/);
  });

  test('fails for a bad version name, naming it', () => {
    const api: ApiGroupDefinition = {
      group: 'x.example.com',
      kinds: [{ ...WARDLE.kinds[1], versions: [{ ...WARDLE.kinds[1].versions[0], name: 'V1' }] }],
    };
    expect(() => validateApiGroupDefinition(api)).toThrow(/version "V1" does not match v<N>/);
  });

  test('fails for two storage versions', () => {
    const flunder = WARDLE.kinds[0];
    const api: ApiGroupDefinition = { group: 'x.example.com', kinds: [{ ...flunder, versions: flunder.versions.map((v) => ({ ...v, storage: true })) }] };
    expect(() => validateApiGroupDefinition(api)).toThrow(/kind "Flunder": 2 storage versions \[v1alpha1, v1beta1\] \(expected exactly one\)/);
  });

  test('fails for a kind defined twice, even under another plural', () => {
    const fischer = WARDLE.kinds[1];
    const api: ApiGroupDefinition = { group: 'x.example.com', kinds: [fischer, { ...fischer, plural: 'fischen', singular: 'fisch' }] };
    expect(() => validateApiGroupDefinition(api)).toThrow(/kind "Fischer" is defined twice \(kinds must be unique in a group\)/);
  });

  test('fails for a kind without a storage version', () => {
    const fischer = WARDLE.kinds[1];
    const api: ApiGroupDefinition = { group: 'x.example.com', kinds: [{ ...fischer, versions: [{ ...fischer.versions[0], storage: false }] }] };
    expect(() => validateApiGroupDefinition(api)).toThrow(/kind "Fischer": 0 storage versions \[\] \(expected exactly one\)/);
  });

  test('fails for a singular that is not a lowercase DNS-1123 label', () => {
    const api: ApiGroupDefinition = { group: 'x.example.com', kinds: [{ ...WARDLE.kinds[1], singular: 'Fischer' }] };
    expect(() => validateApiGroupDefinition(api)).toThrow(/kind "Fischer": singular "Fischer" is not a lowercase DNS-1123 label/);
  });

  test('fails for a non-label plural and a lowercase kind, listing both', () => {
    const api: ApiGroupDefinition = { group: 'x.example.com', kinds: [{ ...WARDLE.kinds[1], kind: 'fischer', plural: 'Fischers' }] };
    expect(() => validateApiGroupDefinition(api)).toThrow(/kind "fischer" is not UpperCamelCase[\s\S]*plural "Fischers" is not a lowercase DNS-1123 label/);
  });
});

describe('version priority', () => {
  test('orders GA, beta, alpha, higher first', () => {
    const versions = ['v1alpha1', 'v2', 'v1beta1', 'v1', 'v1beta2', 'v11alpha2'];
    expect([...versions].sort(compareKubeVersions)).toEqual(['v2', 'v1', 'v1beta2', 'v1beta1', 'v11alpha2', 'v1alpha1']);
  });

  test('wardle serves v1beta1 (preferred) and v1alpha1', () => {
    expect(servedVersions(WARDLE)).toEqual(['v1beta1', 'v1alpha1']);
    expect(preferredVersion(WARDLE)).toBe('v1beta1');
  });
});
