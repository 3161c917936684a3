import { JSONSchemaProps, KindDefinition, ApiGroupDefinition } from './types';

/**
 * `wardle.example.com`, the API of kubernetes/sample-apiserver, defined so that the bundled
 * server is the same on the wire: the two are interchangeable behind one APIService.
 */

export const WARDLE_GROUP = 'wardle.example.com';

const objectMeta: JSONSchemaProps = { type: 'object' };

const typeMeta = {
  apiVersion: {
    type: 'string',
    description:
      'APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values.',
  },
  kind: {
    type: 'string',
    description:
      'Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to.',
  },
  metadata: objectMeta,
} as const;

const referenceType: JSONSchemaProps = {
  type: 'string',
  description: 'The type of the reference: Flunder or Fischer.',
  enum: ['Flunder', 'Fischer'],
};

const flunderStatus: JSONSchemaProps = { type: 'object', description: 'FlunderStatus is the observed state of a Flunder.' };

/**
 * A CEL rule (x-kubernetes-validations), enforced by kube-apiserver for the CRD and by the bundled
 * server alike: a Flunder may not reference itself. On the root, where `metadata.name` is visible;
 * `referenceType` may be absent on the CRD side (the server defaults it, the CRD does not).
 */
const noSelfReference = (referenceField: string, typeCheck: string) => ({
  rule:
    `!has(self.spec) || !has(self.spec.${referenceField}) || !has(self.metadata.name) || ${typeCheck}` +
    `self.spec.${referenceField} != self.metadata.name`,
  message: 'a Flunder cannot reference itself',
  messageExpression: "'Flunder ' + self.metadata.name + ' cannot reference itself'",
  fieldPath: `.spec.${referenceField}`,
});

const flunderV1alpha1: JSONSchemaProps = {
  type: 'object',
  description: 'Flunder is an example type with a reference to another Flunder or a Fischer.',
  'x-kubernetes-validations': [noSelfReference('reference', "(has(self.spec.referenceType) && self.spec.referenceType != 'Flunder') || ")],
  properties: {
    ...typeMeta,
    spec: {
      type: 'object',
      description: 'FlunderSpec is the desired state of a Flunder.',
      properties: {
        reference: {
          type: 'string',
          description: 'A name of another flunder or fischer, depending on the ReferenceType.',
        },
        referenceType: referenceType,
      },
    },
    status: flunderStatus,
  },
};

const flunderV1beta1: JSONSchemaProps = {
  type: 'object',
  description: 'Flunder is an example type with a reference to another Flunder or a Fischer.',
  'x-kubernetes-validations': [noSelfReference('flunderReference', '')],
  properties: {
    ...typeMeta,
    spec: {
      type: 'object',
      description: 'FlunderSpec is the desired state of a Flunder.',
      properties: {
        flunderReference: {
          type: 'string',
          description: 'A name of another flunder, mutually exclusive to the FischerReference.',
        },
        fischerReference: {
          type: 'string',
          description: 'A name of another fischer, mutually exclusive to the FlunderReference.',
        },
        referenceType: referenceType,
      },
    },
    status: flunderStatus,
  },
};

const fischerV1alpha1: JSONSchemaProps = {
  type: 'object',
  description: 'Fischer lists the names of Flunders that may not be created.',
  properties: {
    ...typeMeta,
    disallowedFlunders: {
      type: 'array',
      description: 'Names of Flunders that the BanFlunder admission rule refuses to create.',
      items: { type: 'string' },
    },
  },
};

const referenceTypeColumn = {
  name: 'Reference-Type',
  type: 'string',
  jsonPath: '.spec.referenceType',
  description: 'The type of the reference: Flunder or Fischer.',
} as const;

export const FLUNDER: KindDefinition = {
  kind: 'Flunder',
  plural: 'flunders',
  singular: 'flunder',
  scope: 'Namespaced',
  versions: [
    {
      name: 'v1alpha1',
      served: true,
      storage: true,
      schema: flunderV1alpha1,
      subresources: { status: true },
      printerColumns: [referenceTypeColumn, { name: 'Reference', type: 'string', jsonPath: '.spec.reference' }],
    },
    {
      name: 'v1beta1',
      served: true,
      storage: false,
      schema: flunderV1beta1,
      subresources: { status: true },
      printerColumns: [
        referenceTypeColumn,
        { name: 'Flunder-Reference', type: 'string', jsonPath: '.spec.flunderReference', priority: 1 },
        { name: 'Fischer-Reference', type: 'string', jsonPath: '.spec.fischerReference', priority: 1 },
      ],
    },
  ],
};

export const FISCHER: KindDefinition = {
  kind: 'Fischer',
  plural: 'fischers',
  singular: 'fischer',
  scope: 'Cluster',
  versions: [{ name: 'v1alpha1', served: true, storage: true, schema: fischerV1alpha1 }],
};

export const WARDLE: ApiGroupDefinition = {
  group: WARDLE_GROUP,
  kinds: [FLUNDER, FISCHER],
};
