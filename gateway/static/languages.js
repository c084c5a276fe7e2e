// What speech in a language can be read in, from GET /languages' routes: its targets with their route;
// with the language not said (detected per utterance), every target some language reaches.
export function reachFrom(routes, source) {
  return source ? (routes[source] || {}) : Object.assign({}, ...Object.values(routes));
}
