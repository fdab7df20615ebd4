// Generate on one device: a preset of real shape with seeded random weights (nothing is downloaded), so
// the text is noise; point it at a Hugging Face folder for real text.
//   node examples/generate.mjs [model=tiny-gpt2] [device]
import { Model, generate, defaultDevice } from 'parallm';

const [model = 'tiny-gpt2', device = defaultDevice()] = process.argv.slice(2);
const m = Model.load(model, { device });
const [out] = await generate(m, ['The meaning of life is'], { maxTokens: 16, temperature: 0.8, topP: 0.95, seed: 1 });
console.log(JSON.stringify({ model, device, tokens: out.tokens.length, finish: out.finish, text: out.text }));
m.dispose();
