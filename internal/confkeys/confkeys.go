// Package confkeys rejects configuration keys that a settings struct does
// not declare. libbeat's unpacking ignores them silently, and a mistyped
// option that is quietly ignored is worse than none.
package confkeys

import (
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"

	"github.com/elastic/elastic-agent-libs/config"
)

// Of returns the top-level keys of the struct v (a value or a pointer):
// the names in its fields' `config` tags, plus extra (keys libbeat itself
// reads from the same section, such as an output's "enabled").
func Of(v any, extra ...string) map[string]bool {
	t := reflect.TypeOf(v)
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	keys := make(map[string]bool, t.NumField()+len(extra))
	addFields(t, keys)
	for _, k := range extra {
		keys[k] = true
	}
	return keys
}

// addFields adds the keys of struct type t; the fields of an `,inline`
// field are keys of the same section.
func addFields(t reflect.Type, keys map[string]bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("config"), ",")
		switch {
		case name != "":
			keys[name] = true
		case hasOpt(opts, "inline"):
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				addFields(ft, keys)
			}
		}
	}
}

func hasOpt(opts, want string) bool {
	for _, o := range strings.Split(opts, ",") {
		if o == want {
			return true
		}
	}
	return false
}

// Check returns an error naming every key of section that known lacks,
// prefixed with the section's path (e.g. "output.http"), and listing the
// known keys; nil when all are known.
func Check(section *config.C, prefix string, known map[string]bool) error {
	var unknown []string
	for _, k := range section.GetFields() {
		if !known[k] {
			unknown = append(unknown, prefix+"."+k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	sort.Strings(unknown)
	names := make([]string, 0, len(known))
	for k := range known {
		names = append(names, k)
	}
	sort.Strings(names)
	return fmt.Errorf("unknown option %s (known options: %s)",
		strings.Join(unknown, ", "), strings.Join(names, ", "))
}

// Unpack unpacks section into dst, a pointer to a settings struct holding
// its defaults, and reports unknown keys and bad values together, so an
// operator fixing one mistake sees the next at the same start. Errors are
// prefixed with the section's path; extra names keys read by others.
func Unpack(section *config.C, prefix string, dst any, extra ...string) error {
	keysErr := Check(section, prefix, Of(dst, extra...))
	if err := section.Unpack(dst); err != nil {
		return errors.Join(keysErr, fmt.Errorf("%s: %w", prefix, err))
	}
	return keysErr
}
