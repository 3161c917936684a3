import * as fs from 'node:fs';
import * as path from 'node:path';
import { ApiGroupDefinition, CustomResourceDefinitions, CustomResourceDefinitionsProps, FISCHER, FLUNDER, KindDefinition, WARDLE } from '../../lib';
import { findObject, validateKubeObject } from './_kube-schemas';
import { newChart, synth } from './_fixtures';

/* eslint-disable @typescript-eslint/no-explicit-any */

function synthCrds(api: ApiGroupDefinition, conversion?: CustomResourceDefinitionsProps['conversion']): any[] {
  const chart = newChart();
  new CustomResourceDefinitions(chart, 'crds', { api, conversion });
  return synth(chart);
}

const CA_PEM = fs.readFileSync(path.join(__dirname, '..', 'fixtures', 'pki', 'ca.crt'), 'utf8');

describe('CustomResourceDefinitions for wardle', () => {
  // GIVEN the wardle API WHEN synthesized as CRDs, accepting conversion None
  const objects = synthCrds(WARDLE, 'None');

  test('matches the snapshot', () => {
    expect(objects).toMatchSnapshot();
  });

  test('one valid, cluster-scoped CRD per kind named <plural>.<group>', () => {
    expect(objects.map((o) => `${o.apiVersion} ${o.kind} ${o.metadata.name}`)).toEqual([
      'apiextensions.k8s.io/v1 CustomResourceDefinition flunders.wardle.example.com',
      'apiextensions.k8s.io/v1 CustomResourceDefinition fischers.wardle.example.com',
    ]);
    for (const object of objects) {
      expect(() => validateKubeObject(object)).not.toThrow();
      expect(object.metadata.namespace).toBeUndefined();
    }
  });

  test('names, scope and conversion', () => {
    const flunders = findObject(objects, 'CustomResourceDefinition', 'flunders.wardle.example.com') as any;
    expect(flunders.spec.group).toBe('wardle.example.com');
    expect(flunders.spec.names).toEqual({ kind: 'Flunder', listKind: 'FlunderList', plural: 'flunders', singular: 'flunder' });
    expect(flunders.spec.scope).toBe('Namespaced');
    expect(flunders.spec.conversion).toEqual({ strategy: 'None' });
    expect((findObject(objects, 'CustomResourceDefinition', 'fischers.wardle.example.com') as any).spec.scope).toBe('Cluster');
  });

  test('versions carry served/storage, the schema, status and printer columns', () => {
    const flunders = findObject(objects, 'CustomResourceDefinition', 'flunders.wardle.example.com') as any;
    expect(flunders.spec.versions.map((v: any) => [v.name, v.served, v.storage])).toEqual([
      ['v1alpha1', true, true],
      ['v1beta1', true, false],
    ]);
    const [v1alpha1, v1beta1] = flunders.spec.versions;
    expect(v1alpha1.schema.openAPIV3Schema).toEqual(FLUNDER.versions[0].schema);
    expect(v1beta1.schema.openAPIV3Schema.properties.spec.properties.flunderReference.type).toBe('string');
    expect(v1alpha1.subresources).toEqual({ status: {} });
    expect(v1alpha1.additionalPrinterColumns).toEqual([
      { name: 'Reference-Type', type: 'string', jsonPath: '.spec.referenceType', description: 'The type of the reference: Flunder or Fischer.' },
      { name: 'Reference', type: 'string', jsonPath: '.spec.reference' },
    ]);
    const fischers = findObject(objects, 'CustomResourceDefinition', 'fischers.wardle.example.com') as any;
    expect(fischers.spec.versions[0].subresources).toBeUndefined();
  });
});

describe('CustomResourceDefinitions for other definitions', () => {
  test('keeps every schema keyword, Kubernetes extensions, scale, short names, categories and deprecation', () => {
    // GIVEN a kind that uses the whole vocabulary
    const api: ApiGroupDefinition = {
      group: 'ships.example.org',
      kinds: [
        {
          kind: 'Ship',
          listKind: 'ShipCollection',
          plural: 'ships',
          singular: 'ship',
          shortNames: ['sh'],
          categories: ['all', 'fleet'],
          scope: 'Namespaced',
          versions: [
            {
              name: 'v1',
              served: true,
              storage: true,
              subresources: { status: true, scale: { specReplicasPath: '.spec.replicas', statusReplicasPath: '.status.replicas', labelSelectorPath: '.status.selector' } },
              schema: {
                type: 'object',
                properties: {
                  spec: {
                    type: 'object',
                    required: ['replicas'],
                    'x-kubernetes-validations': [{ rule: 'self.replicas <= 10', message: 'at most 10' }],
                    properties: {
                      replicas: { type: 'integer', minimum: 0, maximum: 10, default: 1 },
                      port: { 'x-kubernetes-int-or-string': true },
                      crew: { type: 'array', 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['name'], items: { type: 'object', required: ['name'], properties: { name: { type: 'string' } } } },
                      labels: { type: 'object', additionalProperties: { type: 'string' }, 'x-kubernetes-map-type': 'granular' },
                      extra: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true },
                      kind: { type: 'string', enum: ['Sail', 'Steam'], pattern: '^[A-Z]', minLength: 1, maxLength: 10, nullable: true },
                    },
                  },
                },
              },
            },
            { name: 'v1beta1', served: true, storage: false, deprecated: true, deprecationWarning: 'use v1', schema: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true } },
          ],
        },
      ],
    };
    // WHEN synthesized (v1beta1 keeps unknown fields: conversion None loses nothing it would keep)
    const [crd] = synthCrds(api, 'None');
    // THEN the schema is written exactly as defined, in its wire names
    expect(() => validateKubeObject(crd)).not.toThrow();
    expect(crd.spec.names).toEqual({ kind: 'Ship', listKind: 'ShipCollection', plural: 'ships', singular: 'ship', shortNames: ['sh'], categories: ['all', 'fleet'] });
    expect(crd.spec.versions[0].schema.openAPIV3Schema).toEqual(api.kinds[0].versions[0].schema);
    expect(crd.spec.versions[0].subresources).toEqual({ status: {}, scale: { specReplicasPath: '.spec.replicas', statusReplicasPath: '.status.replicas', labelSelectorPath: '.status.selector' } });
    expect(crd.spec.versions[1]).toMatchObject({ name: 'v1beta1', deprecated: true, deprecationWarning: 'use v1', schema: { openAPIV3Schema: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true } } });
  });

  test('fails for versions with different schemas and no conversion webhook, naming them', () => {
    // GIVEN Flunder, whose v1beta1 schema differs from the storage version v1alpha1's
    expect(() => synthCrds(WARDLE)).toThrow(
      /kind "Flunder": versions \[v1beta1\] have a schema other than the storage version "v1alpha1"'s, so conversion "None" would silently drop their fields/,
    );
  });

  test('conversion None by default when versions differ only in descriptions', () => {
    // GIVEN a kind served in two versions whose schemas differ only in their descriptions
    const fischer: KindDefinition = {
      ...FISCHER,
      versions: [FISCHER.versions[0], { ...FISCHER.versions[0], name: 'v1beta1', storage: false, schema: { ...FISCHER.versions[0].schema, description: 'other words' } }],
    };
    // WHEN synthesized without a conversion
    const [crd] = synthCrds({ group: 'x.example.com', kinds: [fischer] });
    // THEN conversion is None
    expect(crd.spec.conversion).toEqual({ strategy: 'None' });
  });

  test('a conversion webhook is written as a v1 ConversionReview webhook behind the Service', () => {
    const objects = synthCrds(WARDLE, { serviceName: 'wardle-conversion', serviceNamespace: 'wardle', caBundlePem: CA_PEM });
    const flunders = findObject(objects, 'CustomResourceDefinition', 'flunders.wardle.example.com') as any;
    expect(() => validateKubeObject(flunders)).not.toThrow();
    expect(flunders.spec.conversion).toEqual({
      strategy: 'Webhook',
      webhook: {
        conversionReviewVersions: ['v1'],
        clientConfig: {
          caBundle: Buffer.from(CA_PEM).toString('base64'),
          service: { name: 'wardle-conversion', namespace: 'wardle', path: '/convert', port: 443 },
        },
      },
    });
  });

  test('fails for a conversion webhook without a CA certificate or with a bad Service name', () => {
    expect(() => synthCrds(WARDLE, { serviceName: 'conv', serviceNamespace: 'wardle', caBundlePem: 'nope' })).toThrow(/conversion.caBundlePem holds no PEM certificate/);
    expect(() => synthCrds(WARDLE, { serviceName: 'Conv', serviceNamespace: 'wardle', caBundlePem: CA_PEM })).toThrow(/conversion.serviceName "Conv" is not a valid DNS-1123 label/);
  });

  test('fails for an invalid definition, naming the problem', () => {
    // GIVEN a kind with two storage versions
    const api: ApiGroupDefinition = { ...WARDLE, kinds: [{ ...FLUNDER, versions: FLUNDER.versions.map((v) => ({ ...v, storage: true })) }] };
    expect(() => synthCrds(api)).toThrow(/kind "Flunder": 2 storage versions \[v1alpha1, v1beta1\] \(expected exactly one\)/);
  });
});
