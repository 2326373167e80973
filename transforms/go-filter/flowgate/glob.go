package flowgate

// Glob is a pattern with `*` (any run) and `?` (one character), anchored at both ends: the Rust SDK's globs.
type Glob struct{ pattern []rune }

// NewGlob compiles pattern.
func NewGlob(pattern string) Glob { return Glob{[]rune(pattern)} }

// Match reports whether text matches the whole pattern (iterative, one backtrack point).
func (g Glob) Match(text string) bool {
	p, t := g.pattern, []rune(text)
	pi, ti, starP, starT := 0, 0, -1, 0
	for ti < len(t) {
		switch {
		case pi < len(p) && (p[pi] == '?' || p[pi] == t[ti]):
			pi, ti = pi+1, ti+1
		case pi < len(p) && p[pi] == '*':
			starP, starT = pi, ti
			pi++
		case starP >= 0:
			starT++
			pi, ti = starP+1, starT
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}
