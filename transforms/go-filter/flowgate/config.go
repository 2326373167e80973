package flowgate

import (
	"errors"
	"sort"
	"strconv"
	"strings"
)

// Config is a transform's configuration: the string map of its chain entry or `<name>.yaml`. Every key asked
// for (present or not) is remembered; when Init returns, a key of the config never asked for refuses the
// component:
//
//	unknown config key "drop_namespace"; this transform reads: actions, drop_namespaces, ports
//
// so read every key you accept, even when you do not need its value.
type Config struct {
	pairs [][2]string
	read  map[string]bool
}

// NewConfig is the configuration made of these (key, value) pairs.
func NewConfig(pairs [][2]string) *Config { return &Config{pairs: pairs, read: map[string]bool{}} }

// Lookup is the value of key (the last one if repeated) and whether it is present.
func (c *Config) Lookup(key string) (string, bool) {
	c.read[key] = true
	for k := len(c.pairs) - 1; k >= 0; k-- {
		if c.pairs[k][0] == key {
			return c.pairs[k][1], true
		}
	}
	return "", false
}

// Get is the value of key, empty when absent.
func (c *Config) Get(key string) string {
	v, _ := c.Lookup(key)
	return v
}

// List is a comma-separated value split into trimmed (spaces), non-empty items; empty when absent.
func (c *Config) List(key string) []string {
	v, _ := c.Lookup(key)
	var out []string
	for _, item := range strings.Split(v, ",") {
		if item = strings.Trim(item, " "); item != "" {
			out = append(out, item)
		}
	}
	return out
}

func (c *Config) unknownKeys() error {
	seen := map[string]bool{}
	var unknown []string
	for _, p := range c.pairs {
		if !c.read[p[0]] && !seen[p[0]] {
			seen[p[0]] = true
			unknown = append(unknown, p[0])
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	sort.Strings(unknown)
	reads := make([]string, 0, len(c.read))
	for k := range c.read {
		reads = append(reads, k)
	}
	sort.Strings(reads)
	quoted := make([]string, len(unknown))
	for k, u := range unknown {
		quoted[k] = strconv.Quote(u)
	}
	msg := "unknown config key "
	if len(unknown) > 1 {
		msg = "unknown config keys "
	}
	msg += strings.Join(quoted, ", ")
	if len(reads) == 0 {
		return errors.New(msg + "; this transform reads no keys")
	}
	return errors.New(msg + "; this transform reads: " + strings.Join(reads, ", "))
}
