// A sync Job's tool written with aws-sdk-go-v2: it loads the shared config as the SDK
// does (AWS_CONFIG_FILE, AWS_SHARED_CREDENTIALS_FILE, AWS_PROFILE) and prints
// GetCallerIdentity as JSON, so a test can check which account a profile reaches.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

func main() {
	ctx := context.Background()
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "load config:", err)
		os.Exit(1)
	}
	out, err := sts.NewFromConfig(cfg).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "GetCallerIdentity:", err)
		os.Exit(1)
	}
	identity := map[string]string{"Account": deref(out.Account), "Arn": deref(out.Arn)}
	if err := json.NewEncoder(os.Stdout).Encode(identity); err != nil {
		os.Exit(1)
	}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
