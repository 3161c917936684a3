import type { ApiGroupDefinition, JSONSchemaProps } from '../../apis/types';

/**
 * A group with a kind that has the scale subresource (Widget: spec and status replicas, a label
 * selector) and one that has not (Plain), as the scale and admission tests serve it.
 */
export const SCALE_GROUP = 'scale.example.com';
const integer: JSONSchemaProps = { type: 'integer' };

export const SCALABLE: ApiGroupDefinition = {
  group: SCALE_GROUP,
  kinds: [
    {
      kind: 'Widget',
      plural: 'widgets',
      singular: 'widget',
      scope: 'Namespaced',
      versions: [
        {
          name: 'v1',
          served: true,
          storage: true,
          schema: {
            type: 'object',
            properties: {
              spec: { type: 'object', properties: { replicas: integer, selector: { type: 'string' } } },
              status: { type: 'object', properties: { replicas: integer, selector: { type: 'string' } } },
            },
          },
          subresources: { status: true, scale: { specReplicasPath: '.spec.replicas', statusReplicasPath: '.status.replicas', labelSelectorPath: '.status.selector' } },
        },
      ],
    },
    {
      kind: 'Plain',
      plural: 'plains',
      singular: 'plain',
      scope: 'Namespaced',
      versions: [{ name: 'v1', served: true, storage: true, schema: { type: 'object', properties: { spec: { type: 'object', properties: { replicas: integer } } } } }],
    },
  ],
};

/** Widgets in namespace ns1. */
export const WIDGETS = `/apis/${SCALE_GROUP}/v1/namespaces/ns1/widgets`;
