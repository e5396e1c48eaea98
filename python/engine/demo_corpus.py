"""The text the demo model's byte-level BPE tokenizer is trained on: plain English on many topics,
written for this project, so the tokenizer is built on any machine with no download."""

DEMO_CORPUS = """\
The river runs past the old mill, where the water turns a wooden wheel all day and all night.
Children walk along the bank after school, counting boats, throwing stones, and naming the birds they see.
A heron stands very still in the shallow reeds; when a fish comes near, it strikes faster than an eye can follow.
In spring the meadows fill with yellow flowers, and bees carry pollen from one blossom to the next.
Farmers plant wheat, barley, corn and beans, and they watch the sky for rain with patient, worried faces.
The baker rises before dawn to knead dough, shape loaves, and light the oven with dry oak branches.
Fresh bread smells of warm crust and butter; people line up outside the shop before it even opens.
Cooking is chemistry you can eat: heat changes proteins, sugar caramelizes, and salt sharpens every flavor.
To make a simple soup, chop onions, carrots and celery, soften them in oil, then add stock and simmer slowly.
A good recipe lists ingredients, quantities, temperatures and times, but a good cook also tastes and adjusts.
Mathematics studies numbers, shapes, patterns and change; its proofs are arguments that leave no doubt.
Every whole number greater than one is either prime or a product of primes in exactly one way.
The area of a circle is pi times the square of its radius, and its circumference is two pi times the radius.
Computers store information as bits, zeros and ones, grouped into bytes, words, pages and files.
A program is a list of instructions; a compiler translates source code into machine code the processor runs.
Memory is fast but small, disks are large but slow, and networks connect machines across rooms and oceans.
Operating systems schedule processes, manage memory, handle interrupts and keep one program from harming another.
Large language models predict the next token from the tokens before it, one step at a time, again and again.
Serving such a model quickly means batching many requests together so the hardware stays busy and efficient.
A scheduler decides which requests run in each iteration, how many tokens each may process, and which must wait.
Prefill reads the whole prompt at once; decode produces one new token per step and reuses cached keys and values.
Latency is how long one user waits; throughput is how much work the whole system finishes each second.
The first token should arrive quickly, and the following tokens should keep a steady, smooth rhythm.
Measuring honestly requires open loop load, careful clocks, many repetitions and clear reporting of every percentile.
History records kingdoms and republics, trade routes and wars, inventions, plagues, revolutions and reforms.
Ancient sailors navigated by the stars, reading the height of the pole star to judge their latitude at night.
The printing press made books cheaper, spread literacy, and carried new ideas quickly from city to city.
Steam engines powered factories and railways; electricity later lit homes and drove motors of every size.
Music moves through rhythm, melody and harmony; a single chord can make a listener feel hope or sorrow.
An orchestra combines strings, woodwinds, brass and percussion under the gestures of a conductor.
Painters mix pigments to capture light, shadow, texture and color on canvas, wood, paper or plaster walls.
Poetry compresses meaning into few words, using sound, image, metaphor and line breaks to surprise the reader.
The human heart beats about seventy times a minute, pumping blood through arteries, veins and tiny capillaries.
Lungs exchange oxygen and carbon dioxide; muscles convert chemical energy into motion and warmth.
Sleep restores the brain and body, and a regular schedule helps people feel rested, alert and calm.
Doctors diagnose illness by asking questions, examining patients, ordering tests and weighing probabilities.
Weather depends on temperature, pressure, humidity and wind; clouds form when moist air rises and cools.
Thunderstorms release enormous energy, with lightning heating the air hotter than the surface of the sun.
Oceans cover most of the planet, storing heat, feeding fisheries, and shaping climate across every continent.
Forests shelter wolves, deer, owls, foxes, mushrooms and mosses, and they clean the air we breathe.
Mountains rise where tectonic plates collide, and glaciers slowly carve valleys, lakes and jagged peaks.
Astronomers study planets, moons, comets, stars, galaxies and the faint glow left over from the early universe.
Light from the nearest star beyond the sun travels for more than four years before it reaches our telescopes.
Gravity keeps the moon in orbit, raises the tides, and bends the paths of light near massive objects.
Physics describes forces, energy, momentum, waves, fields and particles with equations tested by experiment.
Chemistry explains how atoms bond into molecules, why reactions release or absorb heat, and how catalysts help.
Biology explores cells, genes, evolution, ecosystems, and the countless ways living things adapt and survive.
Languages borrow words from each other; grammar changes slowly, while slang changes almost every season.
Translation is difficult because words carry history, humor, tone and culture, not only dictionary meanings.
Good writing is clear, concrete and honest; it respects the reader's time and says exactly what it means.
Teachers explain, question, encourage and listen; students practice, make mistakes, and gradually improve.
Libraries lend books, maps, recordings and newspapers, and quiet rooms where anyone may read and think.
Cities grow around harbors, rivers and crossroads; their streets mix markets, parks, schools and workshops.
Bridges carry roads over rivers using arches, beams, cables and trusses designed to resist wind and weight.
Engineers test materials, calculate loads, add safety margins, and inspect structures throughout their lives.
Trains, buses, bicycles and ferries move people daily; walking remains the simplest way to travel a city.
Sports teach teamwork and discipline: runners pace themselves, swimmers breathe in rhythm, climbers trust ropes.
A chess player plans several moves ahead, weighs threats, and sometimes sacrifices a piece for position.
Gardens need sunlight, water, compost and patience; tomatoes, peppers, lettuce and herbs reward steady care.
Friendship grows from shared time, kindness, trust and laughter, and it survives distance and disagreement.
Questions drive discovery: why is the sky blue, how do birds migrate, what lies beneath the ice of distant moons?
Numbers appear everywhere: 1, 2, 3, 10, 42, 100, 256, 1024, 2048, 3.14159 and 2.71828.
Punctuation matters: commas, periods, colons; semicolons, quotes, "dialogue", (asides), and questions?
Some people write code in Python, Rust, C, Java or Go; others prefer spreadsheets, notebooks and diagrams.
def add(a, b): return a + b  # a tiny function that returns the sum of two numbers
for i in range(10): print(i * i)  # squares from zero to eighty one
The end of a story is often a beginning: the travelers return home, changed, and tell what they have learned.
"""
