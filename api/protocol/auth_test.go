package protocol

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseAuthBody(t *testing.T) {
	cases := []struct {
		name    string
		body    string
		want    AuthBody
		wantErr string // substring of the error; empty means success
	}{
		{
			name: "goim v2 demo body",
			body: `{"mid":123, "room_id":"live://1000", "platform":"web", "accepts":[1000,1001,1002]}`,
			want: AuthBody{Mid: 123, RoomID: "live://1000", Platform: "web", Accepts: []int32{1000, 1001, 1002}},
		},
		{
			name: "goim v2 benchmark client body",
			body: `{"mid":7,"key":"","room_id":"test://1","platform":"ios","accepts":[1000,1001,1002]}`,
			want: AuthBody{Mid: 7, RoomID: "test://1", Platform: "ios", Accepts: []int32{1000, 1001, 1002}},
		},
		{
			name: "signed token and key",
			body: `{"token":"eyJhbGciOi.x.y","key":"k1"}`,
			want: AuthBody{Token: "eyJhbGciOi.x.y", Key: "k1"},
		},
		{
			name: "unknown fields ignored, leading space allowed",
			body: " \n{\"mid\":-1,\"extra\":{\"a\":[1,2]}}",
			want: AuthBody{Mid: -1},
		},
		{name: "empty object", body: `{}`, want: AuthBody{}},
		{name: "empty body", body: ``, wantErr: "empty body"},
		{name: "only spaces", body: "  \t", wantErr: "empty body"},
		{name: "null", body: `null`, wantErr: "not a JSON object"},
		{name: "array", body: `[1,2]`, wantErr: "not a JSON object"},
		{name: "string", body: `"mid"`, wantErr: "not a JSON object"},
		{name: "plain text", body: `mid=1`, wantErr: "not a JSON object"},
		{name: "truncated", body: `{"mid":1`, wantErr: "not JSON"},
		{name: "trailing garbage", body: `{"mid":1}x`, wantErr: "not JSON"},
		{name: "two objects", body: `{"mid":1}{"mid":2}`, wantErr: "not JSON"},
		{name: "mid as string", body: `{"mid":"123"}`, wantErr: `field "mid": string is not a int64`},
		{name: "mid fractional", body: `{"mid":1.5}`, wantErr: `field "mid"`},
		{name: "mid overflows int64", body: `{"mid":9223372036854775808}`, wantErr: `field "mid"`},
		{name: "key as number", body: `{"key":5}`, wantErr: `field "key": number is not a string`},
		{name: "room as object", body: `{"room_id":{}}`, wantErr: `field "room_id"`},
		{name: "accepts as string", body: `{"accepts":"1000"}`, wantErr: `field "accepts"`},
		{name: "accept overflows int32", body: `{"accepts":[2147483648]}`, wantErr: `field "accepts`},
		{name: "token as bool", body: `{"token":true}`, wantErr: `field "token"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseAuthBody([]byte(tc.body))
			if tc.wantErr != "" {
				if !errors.Is(err, ErrAuthBody) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want ErrAuthBody containing %q", err, tc.wantErr)
				}
				if !reflect.DeepEqual(got, AuthBody{}) {
					t.Fatalf("failed parse returned %+v, want the zero value", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}
