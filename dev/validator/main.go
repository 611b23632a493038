// ns8-validate: the NS8 agent's validation steps, built on the agent's own engine
// (gojsonschema v1.2.0, Debian's golang-github-xeipuuv-gojsonschema-dev).
//
//	ns8-validate input  SCHEMA < TASK_DATA_JSON
//	ns8-validate output SCHEMA < CONCATENATED_STEP_OUTPUT
//
// It does what core/agent does for validate-input.json and validate-output.json:
// ${AGENT_INSTALL_DIR}/validator-definitions.json is added to the schema loader when
// it can be read, the schema is compiled (a compile failure aborts), input is the
// task data decoded as Go values, output is the raw step output decoded as JSON.
//
// stdout: what the agent appends to the task output (the error list, input only).
// stderr: what the agent appends to the task error.
// Exit code: 0 valid, 10 input errors, 1 output errors or an aborted validation,
// 2 usage errors.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/xeipuuv/gojsonschema"
)

type validationError struct {
	Parameter string      `json:"parameter"`
	Error     string      `json:"error"`
	Value     interface{} `json:"value"`
	Field     string      `json:"field"`
}

// errorList is the agent's JSON list: parameter is the field up to its first dot.
func errorList(errs []gojsonschema.ResultError) []byte {
	items := make([]validationError, len(errs))
	for i, e := range errs {
		field := e.Field()
		parameter := field
		if dot := strings.Index(field, "."); dot >= 0 {
			parameter = field[:dot]
		}
		items[i] = validationError{parameter, parameter + "_" + e.Type(), e.Value(), field}
	}
	out, _ := json.Marshal(items)
	return out
}

func validate(schemaPath string, document interface{}) ([]gojsonschema.ResultError, error) {
	loader := gojsonschema.NewSchemaLoader()
	definitions := os.Getenv("AGENT_INSTALL_DIR") + "/validator-definitions.json"
	if text, err := os.ReadFile(definitions); err == nil {
		if err := loader.AddSchemas(gojsonschema.NewStringLoader(string(text))); err != nil {
			return nil, fmt.Errorf("Schema loader error while loding %s: %w", definitions, err)
		}
	}
	text, err := os.ReadFile(schemaPath)
	if err != nil {
		return nil, fmt.Errorf("Failed to read schema file %s: %w", schemaPath, err)
	}
	schema, err := loader.Compile(gojsonschema.NewStringLoader(string(text)))
	if err != nil {
		return nil, fmt.Errorf("Schema compile error for file %s: %w", schemaPath, err)
	}
	result, err := schema.Validate(gojsonschema.NewGoLoader(document))
	if err != nil {
		return nil, fmt.Errorf("Schema validate error: %w", err)
	}
	return result.Errors(), nil
}

func main() {
	if len(os.Args) != 3 || (os.Args[1] != "input" && os.Args[1] != "output") {
		fmt.Fprintln(os.Stderr, "usage: ns8-validate input|output SCHEMA < DOCUMENT")
		os.Exit(2)
	}
	mode, schemaPath := os.Args[1], os.Args[2]
	raw, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var document interface{}
	var errs []gojsonschema.ResultError
	if err = json.Unmarshal(raw, &document); err != nil {
		if mode == "input" { // the agent only ever holds decoded task data
			fmt.Fprintf(os.Stderr, "task data is not JSON: %v\n", err)
			os.Exit(2)
		}
		err = fmt.Errorf("JSON unmarshal error: %w", err)
	} else {
		errs, err = validate(schemaPath, document)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "JSON Schema %s validation aborted at step %s: %v\n", mode, schemaPath, err)
		os.Exit(1)
	}
	if len(errs) == 0 {
		return
	}
	fmt.Fprintf(os.Stderr, "Validation errors: %v\n", errs)
	if mode == "output" {
		os.Exit(1)
	}
	os.Stdout.Write(errorList(errs))
	os.Exit(10)
}
