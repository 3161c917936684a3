import { pkiEnvironmentOf, servingDnsNames } from '../lib';

/** The environment names the subdirectory a store is kept in: equal exactly when the certificates' names are. */
describe('pkiEnvironmentOf', () => {
  test('a Service\'s four names: the cluster domain', () => {
    expect(pkiEnvironmentOf('wardle', servingDnsNames('wardle-apiserver', 'wardle'), { service: 'wardle-apiserver' })).toBe('cluster.local');
    expect(pkiEnvironmentOf('wardle', servingDnsNames('wardle-apiserver', 'wardle', 'corp.internal'), { service: 'wardle-apiserver' })).toBe('corp.internal');
  });

  test('the order of the names does not matter', () => {
    const names = servingDnsNames('wardle-apiserver', 'wardle');
    expect(pkiEnvironmentOf('wardle', [...names].reverse(), { service: 'wardle-apiserver' })).toBe('cluster.local');
  });

  test('another SAN besides them: the domain and a hash of the names, one per set of names', () => {
    const names = servingDnsNames('wardle-apiserver', 'wardle');
    const extra = pkiEnvironmentOf('wardle', [...names, 'wardle.example.com'], { service: 'wardle-apiserver' });
    expect(extra).toMatch(/^cluster\.local-[0-9a-f]{12}$/);
    expect(pkiEnvironmentOf('wardle', [...names, 'other.example.com'], { service: 'wardle-apiserver' })).not.toBe(extra);
  });

  test('etcd members\' names (any number of members): the domain', () => {
    const member = (i: number) => [`etcd-${i}.etcd-peer.wardle.svc`, `etcd-${i}.etcd-peer.wardle.svc.cluster.local`, 'localhost'];
    expect(pkiEnvironmentOf('wardle', [...member(0), ...member(1), ...member(2)])).toBe('cluster.local');
    expect(pkiEnvironmentOf('wardle', member(0))).toBe('cluster.local');
  });

  test('names in no cluster domain, or in two: a hash of the names', () => {
    expect(pkiEnvironmentOf('wardle', ['localhost'])).toMatch(/^sans-[0-9a-f]{12}$/);
    expect(pkiEnvironmentOf('wardle', ['a.wardle.svc.one.local', 'a.wardle.svc.two.local'])).toMatch(/^sans-[0-9a-f]{12}$/);
  });
});
