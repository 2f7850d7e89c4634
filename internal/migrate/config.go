package migrate

import (
	"fmt"
	"os"
	"strings"

	"ariga.io/atlas/schemahcl"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
)

// Config is what authd reads of an Atlas project file (atlas.hcl): the
// lint policy, global and per environment, evaluated with schemahcl the
// way the Atlas CLI evaluates it, so that `atlas migrate lint --env ...`
// and `authd migrate lint` configure the analyzers from the same blocks.
type Config struct {
	// Name is the file's name, for messages.
	Name   string
	global *schemahcl.Resource
	envs   []*hclEnv
}

type (
	// hclProject, hclEnv, hclMigration and hclLint mirror the parts of the
	// Atlas CLI's project schema authd uses; everything else in the file
	// is evaluated (variables, getenv) and left alone.
	hclProject struct {
		Envs []*hclEnv `spec:"env"`
		Lint *hclLint  `spec:"lint"`
	}
	hclEnv struct {
		Name      string        `spec:"name,name"`
		Migration *hclMigration `spec:"migration"`
		Lint      *hclLint      `spec:"lint"`
		schemahcl.DefaultExtension
	}
	hclMigration struct {
		Dir string `spec:"dir"`
		schemahcl.DefaultExtension
	}
	hclLint struct {
		schemahcl.DefaultExtension
	}
)

func init() {
	schemahcl.Register("env", &hclEnv{})
}

// getenvFunc is atlas.hcl's getenv(name), as the CLI defines it.
var getenvFunc = function.New(&function.Spec{
	Params: []function.Parameter{{Name: "key", Type: cty.String}},
	Type:   function.StaticReturnType(cty.String),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		return cty.StringVal(os.Getenv(args[0].AsString())), nil
	},
})

// LoadConfig reads and evaluates the Atlas project file at path.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("migrate: read project file: %w", err)
	}
	return ParseConfig(path, b)
}

// ParseConfig evaluates an Atlas project file's content; name is used in
// messages.
func ParseConfig(name string, data []byte) (*Config, error) {
	p := hclparse.NewParser()
	if _, diags := p.ParseHCL(data, name); diags.HasErrors() {
		return nil, fmt.Errorf("migrate: parse %s: %w", name, diags)
	}
	var pr hclProject
	st := schemahcl.New(schemahcl.WithFunctions(map[string]function.Function{"getenv": getenvFunc}))
	if err := st.Eval(p, &pr, map[string]cty.Value{}); err != nil {
		return nil, fmt.Errorf("migrate: evaluate %s: %w", name, err)
	}
	c := &Config{Name: name, envs: pr.Envs}
	if pr.Lint != nil {
		c.global = pr.Lint.Remain()
	}
	return c, nil
}

// LintRules returns the lint block that configures the analyzers of the
// migration directory named dirName (e.g. "postgres"): as the Atlas CLI
// extends an environment's lint block with the global one, the block of
// the environment whose migration dir ends in /dirName when it configures
// any analyzer, the global block otherwise. Nil means no configuration:
// every analyzer keeps its default level.
func (c *Config) LintRules(dirName string) *schemahcl.Resource {
	if c == nil {
		return nil
	}
	for _, e := range c.envs {
		if e.Migration == nil || !strings.HasSuffix(strings.TrimSuffix(e.Migration.Dir, "/"), "/"+dirName) {
			continue
		}
		if e.Lint != nil {
			if r := e.Lint.Remain(); len(r.Children) > 0 || len(r.Attrs) > 0 {
				return r
			}
		}
	}
	return c.global
}

// Env returns the name of the environment whose migration dir ends in
// /dirName, "" when there is none.
func (c *Config) Env(dirName string) string {
	if c == nil {
		return ""
	}
	for _, e := range c.envs {
		if e.Migration != nil && strings.HasSuffix(strings.TrimSuffix(e.Migration.Dir, "/"), "/"+dirName) {
			return e.Name
		}
	}
	return ""
}
