import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import Ajv from 'ajv';
import * as YAML from 'yaml';
import { Fischer, Flunder, FlunderSpecReferenceType, FlunderV1Beta1, FlunderV1Beta1SpecReferenceType } from '../../imports/wardle.example.com';
import { newChart, synth } from './_fixtures';

/* eslint-disable @typescript-eslint/no-explicit-any */

const ROOT = join(__dirname, '..', '..');
const CRDS: any[] = YAML.parseAllDocuments(readFileSync(join(ROOT, 'crds', 'wardle.example.com.yaml'), 'utf8')).map((d) => d.toJS());

/** Validates an object with the openAPIV3Schema its committed CRD holds for its version. */
function validateWithCrd(object: any): string[] {
  const [group, version] = object.apiVersion.split('/');
  const crd = CRDS.find((c) => c.spec.group === group && c.spec.names.kind === object.kind);
  const schema = crd.spec.versions.find((v: any) => v.name === version).schema.openAPIV3Schema;
  const ajv = new Ajv({ strict: false, allErrors: true });
  const validate = ajv.compile(schema);
  return validate(object) ? [] : (validate.errors ?? []).map((e) => `${e.instancePath} ${e.message}`);
}

describe('typed bindings generated from the wardle CRDs', () => {
  test('declares Flunders and a Fischer in a chart and synthesizes them', () => {
    // GIVEN a chart that uses the generated classes
    const chart = newChart();
    new Flunder(chart, 'alpha', {
      metadata: { name: 'my-flunder', namespace: 'default' },
      spec: { reference: 'other', referenceType: FlunderSpecReferenceType.FLUNDER },
    });
    new FlunderV1Beta1(chart, 'beta', {
      metadata: { name: 'my-beta-flunder', namespace: 'default' },
      spec: { fischerReference: 'my-fischer', referenceType: FlunderV1Beta1SpecReferenceType.FISCHER },
    });
    new Fischer(chart, 'fischer', { metadata: { name: 'my-fischer' }, disallowedFlunders: ['banned'] });

    // WHEN synthesized
    const objects: any[] = synth(chart);

    // THEN the objects carry the group/version/kind and fields of the API
    expect(objects).toEqual([
      {
        apiVersion: 'wardle.example.com/v1alpha1',
        kind: 'Flunder',
        metadata: { name: 'my-flunder', namespace: 'default' },
        spec: { reference: 'other', referenceType: 'Flunder' },
      },
      {
        apiVersion: 'wardle.example.com/v1beta1',
        kind: 'Flunder',
        metadata: { name: 'my-beta-flunder', namespace: 'default' },
        spec: { fischerReference: 'my-fischer', referenceType: 'Fischer' },
      },
      { apiVersion: 'wardle.example.com/v1alpha1', kind: 'Fischer', metadata: { name: 'my-fischer' }, disallowedFlunders: ['banned'] },
    ]);
    // AND each validates against the schema of its committed CRD
    for (const object of objects) expect(validateWithCrd(object)).toEqual([]);
  });

  test('the CRD schema check can fail', () => {
    // GIVEN a Flunder whose referenceType is not in the enum
    const bad = { apiVersion: 'wardle.example.com/v1alpha1', kind: 'Flunder', metadata: { name: 'x' }, spec: { referenceType: 'Nope' } };
    expect(validateWithCrd(bad)).toEqual([expect.stringMatching(/^\/spec\/referenceType must be equal to one of the allowed values/)]);
  });

  test('crds/ and imports/ are current with apis/ (scripts/imports.sh --check)', () => {
    // WHEN the drift check regenerates both into a temporary directory
    // THEN it finds no difference (a drift exits 1 and execFileSync throws with the diff)
    const out = execFileSync('bash', [join(ROOT, 'scripts', 'imports.sh'), '--check'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    expect(out).toMatch(/are current/);
  });
});
